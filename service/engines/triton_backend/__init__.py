"""Code that runs inside tritonserver's Python backend (the stub processes), not in the service.

The model.py files of model_repository/ are thin shims that put the project on sys.path and delegate here:
  pipeline_model   `ltx_pipeline`: the decoupled model that runs the project's pipelines
  component_model  text_encoder / transformer / vae_decoder / vae_encoder on torch (the CPU repository)
  bls              the component Protocols bound to BLS calls on the component models
  params           config.pbtxt parameters -> typed settings
Modules that import `triton_python_backend_utils` can only be imported inside a stub. What these models
and the service agree on (tensor names, declarations, assets, the error codec) is in service/contract/.
"""
