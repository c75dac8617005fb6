"""API keys, TLS credentials and signed result URLs: pure code, no grpc (the interceptor is in api/auth.py)."""
