"""Collection storage: format, reader, writer, ingest and the sample collection."""
