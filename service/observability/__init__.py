"""Prometheus metrics and JSON logs (no grpc here; the RPC interceptor is in api/rpc_metrics.py)."""
