"""kubeloop: the ML lifecycle as Kubernetes custom resources, reconciled by a kopf operator."""

GROUP = "kubeloop.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__version__ = "0.1.0"
