"""Domain types shared below the API: normalized specs, progress, outputs and errors.

Nothing here imports grpc, protobuf, torch or tritonclient.
"""
