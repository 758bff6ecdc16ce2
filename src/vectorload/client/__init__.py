"""Client side of the querynode HTTP API: an async client, fan-out/merge and `vectorload search`."""

from vectorload.client.http import QuerynodeClient, QuerynodeError
from vectorload.client.merge import merge_columns, merge_hits, merge_node_answers

__all__ = ["QuerynodeClient", "QuerynodeError", "merge_columns", "merge_hits", "merge_node_answers"]
