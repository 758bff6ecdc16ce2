"""The vectorload querynode: serves hnswlib indexes of loaded segments over HTTP."""
