// The seeds' Node.js client code (@zilliz/milvus2-sdk-node), endpoint aside: the address and token
// come from MILVUS_URI / MILVUS_TOKEN, and QUERY_VECTOR (comma-separated floats) is the vector the
// one search looks for. Each step prints a "== step" line, then what the seed prints.
import { MilvusClient, HttpClient } from "@zilliz/milvus2-sdk-node";

const address = process.env.MILVUS_URI ?? "http://localhost:19530";
const token = process.env.MILVUS_TOKEN ?? "root:Milvus";
const queryVector = (process.env.QUERY_VECTOR ?? "").split(",").filter((s) => s !== "").map(Number);
const client = new MilvusClient({ address, token });
let res;

// 7. Load the collection
console.log("== load my_collection");
res = await client.loadCollection({
  collection_name: "my_collection",
});
console.log(res.error_code);
res = await client.getLoadState({
  collection_name: "my_collection",
});
console.log(res.state);

console.log("== search my_collection");
res = await client.search({
  collection_name: "my_collection",
  data: [queryVector],
  anns_field: "my_vector",
  limit: 3,
  output_fields: ["my_id"],
});
console.log(`${res.status.error_code} hits=${res.results.length} top1=${res.results[0]?.my_id}`);

// 8. Release the collection
console.log("== release my_collection");
res = await client.releaseCollection({
  collection_name: "my_collection",
});
console.log(res.error_code);
res = await client.getLoadState({
  collection_name: "my_collection",
});
console.log(res.state);

// Load only the specified fields. The seed calls `client.load_collection` and
// `client.getCollectionLoadState`: those are the REST client's (HttpClient) names; the gRPC
// client's loadCollection takes the same load_fields and skip_load_dynamic_field.
// (SKIP_REST_V2=1: a server without REST v2, e.g. Milvus 2.3.5.)
if (process.env.SKIP_REST_V2 !== "1") {
  console.log("== load my_collection load_fields");
  await client.loadCollection({
    collection_name: "my_collection",
    load_fields: ["my_id", "my_vector"], // Load only the specified fields
    skip_load_dynamic_field: true, //Skip loading the dynamic field
  });
  const http = new HttpClient({ endpoint: address, token });
  const loadState = await http.getCollectionLoadState({
    collectionName: "my_collection",
  });
  console.log(loadState.data.loadState);
  res = await client.releaseCollection({ collection_name: "my_collection" });
  console.log(res.error_code);
}

// Release partitions
console.log("== release partitions book novel");
await client.loadCollection({ collection_name: "book" });
res = await client.releasePartitions({
  collection_name: "book",
  partition_names: ["novel"],
});
console.log(res.error_code);
for (const partition of ["novel", "poetry"]) {
  res = await client.getLoadState({ collection_name: "book", partition_names: [partition] });
  console.log(`${partition} ${res.state}`);
}
res = await client.releaseCollection({ collection_name: "book" });
console.log(res.error_code);
client.closeConnection();
