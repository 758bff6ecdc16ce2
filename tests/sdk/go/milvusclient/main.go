// The seeds' Go client code (github.com/milvus-io/milvus/client/v2/milvusclient), endpoint aside:
// the address and token come from MILVUS_ADDRESS / MILVUS_TOKEN, and QUERY_VECTOR (comma-separated
// floats) is the vector the one search looks for. Each step prints a "== step" line, then what the
// seed prints (fmt.Println of an entity.LoadState is "{State Progress}": {3 100} is Loaded).
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
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
			panic(err)
		}
		vector = append(vector, float32(value))
	}
	return entity.FloatVector(vector)
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	milvusAddr := env("MILVUS_ADDRESS", "localhost:19530")
	client, err := milvusclient.New(ctx, &milvusclient.ClientConfig{
		Address: milvusAddr,
		APIKey:  env("MILVUS_TOKEN", "root:Milvus"),
	})
	if err != nil {
		fmt.Println(err.Error())
		os.Exit(1)
	}
	defer client.Close(ctx)

	fmt.Println("== load my_collection")
	loadTask, err := client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}
	// sync wait collection to be loaded
	err = loadTask.Await(ctx)
	if err != nil {
		fmt.Println(err.Error())
	}
	state, err := client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}
	fmt.Println(state)

	fmt.Println("== search my_collection")
	results, err := client.Search(ctx, milvusclient.NewSearchOption("my_collection", 3, []entity.Vector{queryVector()}).
		WithANNSField("my_vector").WithOutputFields("my_id"))
	if err != nil {
		fmt.Println(err.Error())
	} else {
		top1, _ := results[0].IDs.Get(0)
		fmt.Printf("hits=%d top1=%v\n", results[0].ResultCount, top1)
	}

	fmt.Println("== release my_collection")
	err = client.ReleaseCollection(ctx, milvusclient.NewReleaseCollectionOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}
	state, err = client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}
	fmt.Println(state)

	fmt.Println("== load my_collection load_fields")
	loadTask, err = client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("my_collection").
		WithLoadFields("my_id", "my_vector"))
	if err != nil {
		fmt.Println(err.Error())
	}
	// sync wait collection to be loaded
	err = loadTask.Await(ctx)
	if err != nil {
		fmt.Println(err.Error())
	}
	state, err = client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}
	fmt.Println(state)
	err = client.ReleaseCollection(ctx, milvusclient.NewReleaseCollectionOption("my_collection"))
	if err != nil {
		fmt.Println(err.Error())
	}

	fmt.Println("== release partitions book novel")
	loadTask, err = client.LoadCollection(ctx, milvusclient.NewLoadCollectionOption("book"))
	if err == nil {
		err = loadTask.Await(ctx)
	}
	if err != nil {
		fmt.Println(err.Error())
	}
	err = client.ReleasePartitions(ctx, milvusclient.NewReleasePartitionsOptions("book", "novel"))
	if err != nil {
		fmt.Println("failed to release partitions:", err.Error())
	}
	for _, partition := range []string{"novel", "poetry"} {
		state, err = client.GetLoadState(ctx, milvusclient.NewGetLoadStateOption("book", partition))
		if err != nil {
			fmt.Println(err.Error())
		}
		fmt.Println(partition, state)
	}
	err = client.ReleaseCollection(ctx, milvusclient.NewReleaseCollectionOption("book"))
	if err != nil {
		fmt.Println(err.Error())
	}
	fmt.Println("done")
}
