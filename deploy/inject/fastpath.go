package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/warden-sidecar/warden/agent/config"
)

// What warden.io/fast-path: "sockmap" grants the sidecar: a read-only view
// of the node's cgroup tree and the pod's UID, so that warden finds the
// pod's cgroup (which holds the app's container as well as its own) and
// attaches the fast path there (WARDEN_FAST_PATH_CGROUP=pod).
const (
	// HostCgroupVolume is the hostPath volume of the node's cgroup mount.
	// /sys/fs/cgroup, not the cgroup2 mount itself: on a hybrid node it is
	// /sys/fs/cgroup/unified, a submount that the runtime's recursive bind
	// brings along, and warden looks for it there.
	HostCgroupVolume = "warden-host-cgroup"
	hostCgroupPath   = "/sys/fs/cgroup"
	// HostCgroupMountPath is where warden's container sees it
	// (WARDEN_FAST_PATH_HOST_CGROUP's default).
	HostCgroupMountPath = "/run/warden/host-cgroup"
)

// fastPathPodEnv are the variables that point warden at the pod's cgroup.
func fastPathPodEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "WARDEN_FAST_PATH_CGROUP", Value: config.FastPathCgroupPod},
		{Name: "WARDEN_FAST_PATH_HOST_CGROUP", Value: HostCgroupMountPath},
		{Name: "WARDEN_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.uid"}}},
	}
}

func hostCgroupVolume() corev1.Volume {
	dir := corev1.HostPathDirectory
	return corev1.Volume{Name: HostCgroupVolume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostCgroupPath, Type: &dir}}}
}

// hostCgroupMount is read-only, recursively where the kubelet and the
// runtime can (Kubernetes 1.30+ with a runtime that supports it): a plain
// read-only bind leaves submounts such as a hybrid node's unified
// hierarchy writable. warden runs as a non-root UID without
// CAP_DAC_OVERRIDE, and the cgroup files are root's, in either case.
func hostCgroupMount() corev1.VolumeMount {
	rro := corev1.RecursiveReadOnlyIfPossible
	return corev1.VolumeMount{Name: HostCgroupVolume, MountPath: HostCgroupMountPath, ReadOnly: true, RecursiveReadOnly: &rro}
}

// checkFastPath refuses an annotated WARDEN_FAST_PATH_CGROUP beside
// sockmap: in a pod, only the pod's cgroup holds warden and the app.
func (a annotations) checkFastPath(cfg config.Config) error {
	if cfg.FastPath != config.FastPathSockmap {
		return nil
	}
	if key, ok := a.from["WARDEN_FAST_PATH_CGROUP"]; ok {
		return fmt.Errorf(`inject: annotation %s: with %s: "%s" the webhook sets WARDEN_FAST_PATH_CGROUP=%s, the pod's cgroup: the only one that holds warden and the app; remove %s`,
			key, a.from["WARDEN_FAST_PATH"], config.FastPathSockmap, config.FastPathCgroupPod, key)
	}
	return nil
}
