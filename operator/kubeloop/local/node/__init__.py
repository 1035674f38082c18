"""The local node: plays kubelet, the Job/CronJob controllers and KServe's controller.

It watches the local API server like any controller does and runs the containers of
kubeloop's own images as local processes, writing real Pod / Job / InferenceService status
back. See ARCHITECTURE.md ("The embedded control plane").
"""
