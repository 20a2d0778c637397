"""medfoundry: the MedXIAOHE medical MLLM recipe as a Kubernetes-orchestrated MLOps platform."""

__version__ = "0.1.0"
