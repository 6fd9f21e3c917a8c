"""gRPC streaming ingest: the ``IngestStream`` service (``ingest_stream.proto``), its server and the file client."""
