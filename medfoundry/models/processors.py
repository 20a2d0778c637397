"""Image-only processors for the Qwen2-VL family.

The stock Qwen2-VL / Qwen2.5-VL processors require a video processor, which needs torchvision (not installed: the
available build breaks transformers here). These subclasses drop the video processor; `AutoProcessor` cannot rebuild
them, so save and load them with the subclass (`medfoundry.models.loading` records the class in
medfoundry_model.json).
"""

from __future__ import annotations

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from medfoundry.models.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN


def _init_image_only(processor, image_processor, tokenizer, chat_template) -> None:
    processor.image_token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
    processor.video_token = getattr(tokenizer, "video_token", None) or VIDEO_TOKEN
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    ProcessorMixin.__init__(processor, image_processor, tokenizer, chat_template=chat_template)


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 - mirrors the transformers class name
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        _init_image_only(self, image_processor, tokenizer, chat_template)


PROCESSOR_CLASSES: dict[str, type[ProcessorMixin]] = {
    cls.__name__: cls for cls in (ImageOnlyQwen2VLProcessor, ImageOnlyQwen2_5_VLProcessor)
}
# Which processor serves each vision family (transformers model_type).
FAMILY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": ImageOnlyQwen2VLProcessor,
    "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor,
}
