package io.vectorload.sdktest;

import io.milvus.v2.client.ConnectConfig;
import io.milvus.v2.client.MilvusClientV2;
import io.milvus.v2.service.collection.request.GetLoadStateReq;
import io.milvus.v2.service.collection.request.LoadCollectionReq;
import io.milvus.v2.service.collection.request.ReleaseCollectionReq;
import io.milvus.v2.service.partition.request.ReleasePartitionsReq;
import io.milvus.v2.service.vector.request.SearchReq;
import io.milvus.v2.service.vector.request.data.FloatVec;
import io.milvus.v2.service.vector.response.SearchResp;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * The seeds' Java client code (MilvusClientV2), endpoint aside: the uri and token come from
 * MILVUS_URI / MILVUS_TOKEN, and QUERY_VECTOR (comma-separated floats) is the vector the one search
 * looks for. Each step prints a "== step" line, then what the seed prints.
 */
public final class SeedV2 {
    private SeedV2() {}

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null ? fallback : value;
    }

    static List<Float> queryVector() {
        List<Float> vector = new ArrayList<>();
        for (String part : env("QUERY_VECTOR", "").split(",")) {
            if (!part.isEmpty()) {
                vector.add(Float.parseFloat(part));
            }
        }
        return vector;
    }

    public static void main(String[] args) {
        String CLUSTER_ENDPOINT = env("MILVUS_URI", "http://localhost:19530");
        String TOKEN = env("MILVUS_TOKEN", "root:Milvus");

        // 1. Connect to Milvus server
        ConnectConfig connectConfig = ConnectConfig.builder()
                .uri(CLUSTER_ENDPOINT)
                .token(TOKEN)
                .build();

        MilvusClientV2 client = new MilvusClientV2(connectConfig);

        System.out.println("== load my_collection");
        // 6. Load the collection
        LoadCollectionReq loadCollectionReq = LoadCollectionReq.builder()
                .collectionName("my_collection")
                .build();

        client.loadCollection(loadCollectionReq);

        // 7. Get load state of the collection
        GetLoadStateReq loadStateReq = GetLoadStateReq.builder()
                .collectionName("my_collection")
                .build();

        Boolean res = client.getLoadState(loadStateReq);
        System.out.println(res);

        System.out.println("== search my_collection");
        SearchResp searchResp = client.search(SearchReq.builder()
                .collectionName("my_collection")
                .annsField("my_vector")
                .data(Collections.singletonList(new FloatVec(queryVector())))
                .topK(3)
                .outputFields(Collections.singletonList("my_id"))
                .build());
        List<SearchResp.SearchResult> hits = searchResp.getSearchResults().get(0);
        System.out.println("hits=" + hits.size() + " top1=" + hits.get(0).getId());

        System.out.println("== release my_collection");
        // 8. Release the collection
        ReleaseCollectionReq releaseCollectionReq = ReleaseCollectionReq.builder()
                .collectionName("my_collection")
                .build();

        client.releaseCollection(releaseCollectionReq);
        res = client.getLoadState(loadStateReq);
        System.out.println(res);

        System.out.println("== load my_collection load_fields");
        // 6. Load the collection
        loadCollectionReq = LoadCollectionReq.builder()
                .collectionName("my_collection")
                .loadFields(Arrays.asList("my_id", "my_vector"))
                .build();

        client.loadCollection(loadCollectionReq);

        // 7. Get load state of the collection
        res = client.getLoadState(loadStateReq);
        System.out.println(res);
        client.releaseCollection(releaseCollectionReq);

        System.out.println("== release partitions book novel");
        client.loadCollection(LoadCollectionReq.builder().collectionName("book").build());
        List<String> partitionNames = new ArrayList<>();
        partitionNames.add("novel");
        client.releasePartitions(ReleasePartitionsReq.builder()
                .collectionName("book")
                .partitionNames(partitionNames)
                .build());
        for (String partition : Arrays.asList("novel", "poetry")) {
            res = client.getLoadState(GetLoadStateReq.builder()
                    .collectionName("book")
                    .partitionName(partition)
                    .build());
            System.out.println(partition + " " + res);
        }
        client.releaseCollection(ReleaseCollectionReq.builder().collectionName("book").build());
        System.out.println("done");
        client.close();
    }
}
