package inject

import (
	_ "embed"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// template is sidecar.yaml: the two containers in order and the socket
// volume by source.
type template struct {
	InitContainers      []corev1.Container       `json:"initContainers"`
	SpiffeSocketVolumes map[string]corev1.Volume `json:"spiffeSocketVolumes"`

	init, sidecar corev1.Container
	socketVolumes map[string]corev1.Volume
}

//go:embed sidecar.yaml
var sidecarYAML []byte

var loadTemplate = sync.OnceValues(func() (*template, error) {
	var t template
	if err := yaml.UnmarshalStrict(sidecarYAML, &t); err != nil {
		return nil, fmt.Errorf("inject: sidecar.yaml: %w", err)
	}
	if len(t.InitContainers) != 2 || t.InitContainers[0].Name != InitContainerName || t.InitContainers[1].Name != ContainerName {
		return nil, fmt.Errorf("inject: sidecar.yaml: expected the init containers %s and %s, in that order", InitContainerName, ContainerName)
	}
	t.init, t.sidecar = t.InitContainers[0], t.InitContainers[1]
	t.socketVolumes = t.SpiffeSocketVolumes
	for _, src := range []string{SocketCSI, SocketHostPath} {
		v, ok := t.socketVolumes[src]
		if !ok || !slices.ContainsFunc(t.sidecar.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
			return nil, fmt.Errorf("inject: sidecar.yaml: expected a %s volume under spiffeSocketVolumes that %s mounts", src, ContainerName)
		}
	}
	if len(t.socketVolumes) != 2 {
		return nil, fmt.Errorf("inject: sidecar.yaml: expected spiffeSocketVolumes %s and %s only", SocketCSI, SocketHostPath)
	}
	for _, name := range []string{"warden-inbound", "warden-admin"} {
		if !slices.ContainsFunc(t.sidecar.Ports, func(p corev1.ContainerPort) bool { return p.Name == name }) {
			return nil, fmt.Errorf("inject: sidecar.yaml: expected %s to declare the port %s", ContainerName, name)
		}
	}
	return &t, nil
})

// containers fills in the template's two containers.
func (s settings) containers(t *template, image string) (corev1.Container, corev1.Container) {
	initC := *t.init.DeepCopy()
	initC.Image = image
	initC.Env = s.initEnv

	c := *t.sidecar.DeepCopy()
	c.Image = image
	c.Env = s.sidecarEnv
	c.Resources = s.resources
	for i := range c.Ports {
		switch c.Ports[i].Name {
		case "warden-inbound":
			c.Ports[i].ContainerPort = int32(s.inboundPort)
		case "warden-admin":
			c.Ports[i].ContainerPort = int32(s.adminPort)
		}
	}
	uid := int64(s.init.ProxyUID)
	c.SecurityContext.RunAsUser, c.SecurityContext.RunAsGroup = &uid, &uid
	if !s.ebpf {
		c.SecurityContext.Capabilities.Add = nil
	}
	if s.fastPathPod {
		c.VolumeMounts = append(c.VolumeMounts, hostCgroupMount())
	}
	return initC, c
}
