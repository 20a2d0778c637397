from pipelines.medical_mllm_recipe.pipeline import PIPELINE_NAME, STAGES, build, medical_mllm_recipe

pipeline = medical_mllm_recipe

__all__ = ["PIPELINE_NAME", "STAGES", "build", "medical_mllm_recipe", "pipeline"]
