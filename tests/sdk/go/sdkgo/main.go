// The seed's Go client code of the older SDK (github.com/milvus-io/milvus-sdk-go/v2):
// `milvusClient.ReleasePartitions(ctx, "book", []string{"novel"})`, with a load before it, the load
// states after it and one search of the partition left loaded. Endpoint aside: the address and
// token come from MILVUS_ADDRESS / MILVUS_TOKEN, QUERY_VECTOR (comma-separated floats, the sample's
// book_intro dimension) is the search vector. Each step prints a "== step" line, then its result
// (entity.LoadState prints as its number: 1 NotLoad, 3 Loaded).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/milvus-io/milvus-sdk-go/v2/entity"
)

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok {
		return value
	}
	return fallback
}

func queryVector() entity.FloatVector {
	var vector []float32
	for _, part := range strings.Split(os.Getenv("QUERY_VECTOR"), ",") {
		if part == "" {
			continue
		}
		value, err := strconv.ParseFloat(part, 32)
		if err != nil {
			log.Fatal(err)
		}
		vector = append(vector, float32(value))
	}
	return entity.FloatVector(vector)
}

func main() {
	ctx := context.Background()
	milvusClient, err := client.NewClient(ctx, client.Config{
		Address: env("MILVUS_ADDRESS", "localhost:19530"),
		APIKey:  env("MILVUS_TOKEN", "root:Milvus"),
	})
	if err != nil {
		log.Fatal("failed to connect:", err.Error())
	}
	defer milvusClient.Close()

	fmt.Println("== load book")
	if err := milvusClient.LoadCollection(ctx, "book", false); err != nil {
		log.Fatal("failed to load collection:", err.Error())
	}
	state, err := milvusClient.GetLoadState(ctx, "book", nil)
	if err != nil {
		log.Fatal("failed to get load state:", err.Error())
	}
	fmt.Println(state)

	fmt.Println("== release partitions book novel")
	err = milvusClient.ReleasePartitions(
		context.Background(), // ctx
		"book",               // CollectionName
		[]string{"novel"},    // partitionNames
	)
	if err != nil {
		log.Fatal("failed to release partitions:", err.Error())
	}
	for _, partition := range []string{"novel", "poetry"} {
		state, err := milvusClient.GetLoadState(ctx, "book", []string{partition})
		if err != nil {
			log.Fatal("failed to get load state:", err.Error())
		}
		fmt.Println(partition, state)
	}

	fmt.Println("== search book poetry")
	sp, _ := entity.NewIndexHNSWSearchParam(64)
	results, err := milvusClient.Search(ctx, "book", []string{"poetry"}, "", []string{"book_id"},
		[]entity.Vector{queryVector()}, "book_intro", entity.L2, 3, sp)
	if err != nil {
		log.Fatal("failed to search:", err.Error())
	}
	top1, _ := results[0].IDs.Get(0)
	fmt.Printf("hits=%d top1=%v\n", results[0].ResultCount, top1)

	fmt.Println("== release book")
	if err := milvusClient.ReleaseCollection(ctx, "book"); err != nil {
		log.Fatal("failed to release collection:", err.Error())
	}
	state, err = milvusClient.GetLoadState(ctx, "book", nil)
	if err != nil {
		log.Fatal("failed to get load state:", err.Error())
	}
	fmt.Println(state)
}
