"""Export of the LTX components to ONNX and TensorRT, and generation of Triton model repositories.

`export.components` declares each exportable component once (tensor names, dtypes, dynamic axes, sample
inputs, TensorRT shape ranges, in the vocabulary of `export.shapes`); every other module here is driven by
those declarations:
  onnx_export     torch (dynamo exporter) -> ONNX, dynamic axes checked and named as declared
  parity          ONNX on onnxruntime vs PyTorch, max abs / rel error against stated tolerances
  tensorrt_build  ONNX -> TensorRT plan with optimization profiles and a timing cache (GPU only)
  triton_config   config.pbtxt text for Python-backend and tensorrt_plan component models
  repository      the checked-in CPU repository's configs and the generated GPU repository
  stages          cached, re-runnable stages keyed by the model hash
Run `python -m export --help`.
"""
