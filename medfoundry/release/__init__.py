"""Release path: model registry with lineage, promotion gates, GitOps promotion and rollback.

Import the submodules directly (`medfoundry.release.registry`, `.gates`, `.manifests`, `.gitops`, `.promote`);
this package stays light so that `medfoundry --help` is fast.
"""
