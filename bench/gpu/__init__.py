"""`python -m bench.gpu`: the one-call GPU benchmark (bench/README.md, "Issue 13").

On one CUDA GPU it builds LTX-Video 0.9.7 13B (transformer, VAE, x2 latent upsampler) at the real shapes
with random weights, times one transformer step per fast-path configuration (service/models/fast_path.py),
runs the whole distilled two-pass request with the best one, stage by stage, and prints one markdown table.
`--smoke` runs the same code on a CPU at reduced depth and size (tests/unit/test_bench_gpu_smoke.py).
"""
