"""The prepare stage (service/inputs/prepare.py): prompt expansion, media fetch/decode/safety/CRF, LoRA
files, all before a job takes the accelerator."""

from service.inputs.prepare import InputPreparer, PreparedJob, prepare_endpoint_inputs

__all__ = ["InputPreparer", "PreparedJob", "prepare_endpoint_inputs"]
