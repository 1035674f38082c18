"""The local node: plays kubelet, the Job/CronJob controllers and KServe's controller.

It watches the local API server like any controller does and runs the containers of
kubeloop's own images as local processes, writing real Pod / Job / InferenceService status
back. See ARCHITECTURE.md ("The embedded control plane"). Run it with
`python -m kubeloop.local.node.main` (main.py); its pieces:

- kubelet.py: `KubeletController` — Node registration, binding (and unschedulable pods),
  one `PodWorker` (podworker.py) per pod, the container log endpoint (containerlogs.py);
- jobs.py: `JobController` — batch/v1 Jobs, and ttlSecondsAfterFinished;
- cronjobs.py, inferenceservices.py: `CronJobController`, `InferenceServiceController`.

Conventions a container can rely on (each module's docstring has the details):

- images (images.py): an image runs when its repository is mapped to a local command
  (`--image REPO=COMMAND`, plus kubeloop's own images); `python` is this interpreter. Any
  other image fails the pod with reason ImageNotRunnableLocally.
- filesystem (volumes.py): emptyDir, configMap and secret volumes are directories of the
  pod under the state directory; mount paths in env values, command, args and workingDir are
  rewritten to them, and `KUBELOOP_VOLUME_<NAME>` names them. Other volume types fail the pod.
  A container's cwd is a per-pod directory, HOME and TMPDIR are per-pod too.
- network (localnet.py): every pod is 127.0.0.1; cluster-DNS names of existing Services in
  env values and args become 127.0.0.1; a Job's pods get MASTER_ADDR=127.0.0.1 and one
  free MASTER_PORT per Job.
- processes (runtime.py): one process group per container; SIGTERM, grace period, SIGKILL;
  nothing outlives the node (`KUBELOOP_NODE_STATE_DIR` in each container's environment lets
  a restarted node find leftovers).

Deliberately not emulated, and refused or reported rather than faked: resource limits and
OOM kills, lifecycle hooks, sidecar init containers (the pod fails), gRPC probes (never
ready), ephemeral containers, exec/attach/port-forward, Service ports other than the
targetPort (no kube-proxy), the machine's hostname (`hostname` prints the host's; the
HOSTNAME variable is the pod's), Events.
"""
