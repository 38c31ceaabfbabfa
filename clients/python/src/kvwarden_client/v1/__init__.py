"""Generated kvwarden.v1 messages (kvwarden_pb2) and stubs (kvwarden_pb2_grpc): clients/python/generate-stubs.sh."""
