"""A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager).

Binaries are built from Go modules by `devcluster/build.sh` into a per-version cache; this
package starts them on 127.0.0.1 with generated certificates and an admin identity.
"""
