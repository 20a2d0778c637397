"""Ingest: Reads the built-in real sources (DICOM studies shipped by pydicom/pydicom-data, HPO and ICD-10-CM terms) and any user corpora (local path or s3://) into raw records."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def ingest(profile: str, raw_data: Output[Dataset]) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage("ingest", profile, "", paths={"raw_data": raw_data.path})
