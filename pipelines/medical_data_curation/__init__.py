from pipelines.medical_data_curation.pipeline import PIPELINE_NAME, STAGES, build, medical_data_curation

pipeline = medical_data_curation

__all__ = ["PIPELINE_NAME", "STAGES", "build", "medical_data_curation", "pipeline"]
