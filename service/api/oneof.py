"""Which field of the GenerationInput / GenerationOutput oneofs carries each endpoint."""

from service.domain.specs import Endpoint

ONEOF_FIELD: dict[Endpoint, str] = {
    Endpoint.TEXT_TO_VIDEO: "text_to_video",
    Endpoint.MULTICONDITIONING: "multiconditioning",
    Endpoint.DISTILLED_MULTICONDITIONING: "distilled_multiconditioning",
    Endpoint.EXTEND: "extend",
    Endpoint.LTX2_TEXT_TO_VIDEO: "ltx2_text_to_video",
}
