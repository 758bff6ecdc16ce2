package io.vectorload.sdktest;

import io.milvus.client.MilvusServiceClient;
import io.milvus.grpc.GetLoadStateResponse;
import io.milvus.grpc.SearchResults;
import io.milvus.param.ConnectParam;
import io.milvus.param.MetricType;
import io.milvus.param.R;
import io.milvus.param.RpcStatus;
import io.milvus.param.collection.GetLoadStateParam;
import io.milvus.param.collection.LoadCollectionParam;
import io.milvus.param.collection.ReleaseCollectionParam;
import io.milvus.param.dml.SearchParam;
import io.milvus.param.partition.ReleasePartitionsParam;
import io.milvus.response.SearchResultsWrapper;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The seed's Java client code of the v1 API (MilvusServiceClient, ReleasePartitionsParam), with a
 * load before it, the load states after it and one search of the partition left loaded. Endpoint
 * aside: MILVUS_URI / MILVUS_TOKEN; QUERY_VECTOR (comma-separated floats, the sample's book_intro
 * dimension) is the search vector. Each step prints a "== step" line, then its result.
 */
public final class SeedV1 {
    private SeedV1() {}

    static <T> T check(R<T> response, String what) {
        if (response.getStatus() != R.Status.Success.getCode()) {
            System.out.println("failed to " + what + ": " + response.getMessage());
            System.exit(1);
        }
        return response.getData();
    }

    static String state(MilvusServiceClient milvusClient, List<String> partitions) {
        GetLoadStateParam.Builder param = GetLoadStateParam.newBuilder().withCollectionName("book");
        if (!partitions.isEmpty()) {
            param.withPartitionNames(partitions);
        }
        GetLoadStateResponse response = check(milvusClient.getLoadState(param.build()), "get load state");
        return response.getState().name();
    }

    public static void main(String[] args) {
        MilvusServiceClient milvusClient = new MilvusServiceClient(ConnectParam.newBuilder()
                .withUri(SeedV2.env("MILVUS_URI", "http://localhost:19530"))
                .withToken(SeedV2.env("MILVUS_TOKEN", "root:Milvus"))
                .build());

        System.out.println("== load book");
        RpcStatus status = check(milvusClient.loadCollection(LoadCollectionParam.newBuilder()
                .withCollectionName("book")
                .withSyncLoad(true)
                .build()), "load collection");
        System.out.println(status.getMsg());
        System.out.println(state(milvusClient, Collections.emptyList()));

        System.out.println("== release partitions book novel");
        List<String> partitionNames = new ArrayList<>();
        partitionNames.add("novel");
        R<RpcStatus> released = milvusClient.releasePartitions(
          ReleasePartitionsParam.newBuilder()
            .withCollectionName("book")
            .withPartitionNames(partitionNames)
            .build()
        );
        System.out.println(check(released, "release partitions").getMsg());
        System.out.println("novel " + state(milvusClient, Collections.singletonList("novel")));
        System.out.println("poetry " + state(milvusClient, Collections.singletonList("poetry")));

        System.out.println("== search book poetry");
        SearchResults results = check(milvusClient.search(SearchParam.newBuilder()
                .withCollectionName("book")
                .withPartitionNames(Collections.singletonList("poetry"))
                .withVectorFieldName("book_intro")
                .withMetricType(MetricType.L2)
                .withFloatVectors(Collections.singletonList(SeedV2.queryVector()))
                .withTopK(3)
                .withOutFields(Collections.singletonList("book_id"))
                .withParams("{\"ef\": 64}")
                .build()), "search");
        List<SearchResultsWrapper.IDScore> hits = new SearchResultsWrapper(results.getResults()).getIDScore(0);
        System.out.println("hits=" + hits.size() + " top1=" + hits.get(0).getLongID());

        System.out.println("== release book");
        System.out.println(check(milvusClient.releaseCollection(ReleaseCollectionParam.newBuilder()
                .withCollectionName("book")
                .build()), "release collection").getMsg());
        System.out.println(state(milvusClient, Collections.emptyList()));
        milvusClient.close();
    }
}
