"""Fill a real Milvus with the seed collections (`vectorload_dev.e2e.seeds`): `my_collection`
(my_id, my_vector, my_varchar, dynamic `color`) and `book` (book_id, word_count, book_intro;
partitions novel and poetry), HNSW-indexed, not loaded.

Run with the python of the Milvus venv (bench/milvus_env.py: pymilvus 2.3.5), inside Milvus'
network namespace; imports only numpy and pymilvus. The rows come from an .npz the test writes
from `seeds.arrays()`, so Milvus holds exactly what the vectorload storage root holds.

    python milvus_setup.py --port 19530 --data seeds.npz
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

HNSW = {"index_type": "HNSW", "metric_type": "L2", "params": {"M": 16, "efConstruction": 200}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data", required=True)
    args = p.parse_args()
    data = np.load(args.data)
    connections.connect(host="127.0.0.1", port=args.port)
    for name in ("my_collection", "book"):
        if utility.has_collection(name):
            utility.drop_collection(name)

    my_vectors = data["my_vectors"]
    schema = CollectionSchema(
        [
            FieldSchema("my_id", DataType.INT64, is_primary=True),
            FieldSchema("my_vector", DataType.FLOAT_VECTOR, dim=my_vectors.shape[1]),
            FieldSchema("my_varchar", DataType.VARCHAR, max_length=64),
        ],
        enable_dynamic_field=True,
    )
    my = Collection("my_collection", schema)
    my.insert(
        [
            {"my_id": i, "my_vector": v.tolist(), "my_varchar": f"v{i}", "color": str(data["colors"][i])}
            for i, v in enumerate(my_vectors)
        ]
    )
    my.flush()
    my.create_index("my_vector", HNSW)

    book_vectors = data["book_vectors"]
    schema = CollectionSchema(
        [
            FieldSchema("book_id", DataType.INT64, is_primary=True),
            FieldSchema("word_count", DataType.INT64),
            FieldSchema("book_intro", DataType.FLOAT_VECTOR, dim=book_vectors.shape[1]),
        ]
    )
    book = Collection("book", schema)
    partitions = [str(p) for p in data["book_partitions"]]
    for partition in partitions:
        if partition != "_default":
            book.create_partition(partition)
    per = len(book_vectors) // len(partitions)
    for k, partition in enumerate(partitions):
        ids = list(range(k * per, (k + 1) * per))
        book.insert(
            [ids, [i * 10 for i in ids], book_vectors[k * per : (k + 1) * per].tolist()],
            partition_name=partition,
        )
    book.flush()
    book.create_index("book_intro", HNSW)
    for name, rows in (("my_collection", len(my_vectors)), ("book", len(book_vectors))):
        utility.wait_for_index_building_complete(name)
        while int(utility.index_building_progress(name).get("indexed_rows", 0)) < rows:
            time.sleep(0.2)
    print(f"my_collection {my.num_entities} rows, book {book.num_entities} rows")


if __name__ == "__main__":
    main()
