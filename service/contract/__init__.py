"""The contract leaf: what every side of the service agrees on, written once.

  geometry    ModelGeometry: the facts about a model family that shapes and normalization need
  frames      the frame rule (legal lengths 8k + 1) and the pixel convention (uint8 <-> [-1, 1])
  tensors     tensor declarations: names, dtypes, axes (the vocabulary of ONNX graphs, TensorRT profiles,
              config.pbtxt and the BLS bindings)
  ranges      the min/opt/max of every dynamic axis that the API lets a client cause
  components  one declaration per component model: inputs, outputs, optional-input defaults, STG
  pipeline    the `ltx_pipeline` Triton model's tensors, parameters and error codec
  assets      what `ltx_pipeline` needs besides the component models (geometry, scheduler config)

Imported by the service (engines, pipelines, models), by the Triton models and by `export/`. It imports
only the standard library, numpy and `service.domain` at run time: no torch, no tritonclient, no
`triton_python_backend_utils` (tests/unit/test_import_layers.py keeps it so; torch appears only in
type annotations).
"""
