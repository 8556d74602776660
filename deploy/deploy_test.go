// Package deploy_test validates the deployment files offline: every Kubernetes
// manifest is decoded in strict mode into the k8s.io/api type for its kind (an
// unknown or misplaced field, or a wrong type, is an error, as the API server's
// schema would make it), and the pieces are checked against each other and
// against modgate's own configuration loader. CI cannot download kubeconform's
// JSON schemas; the Go API types are the same schema, compiled in.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/modgate/modgate/internal/config"
)

const k8sDir = "kubernetes"

// kustomization is the subset of kustomize's schema the base uses; strict decoding
// rejects any other field, so a typo cannot silently drop a setting.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// newObject returns the typed object for a manifest's apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %s %s (add it to newObject)", apiVersion, kind)
}

// decodeManifests strictly decodes every document in data.
func decodeManifests(data []byte) ([]any, error) {
	var objs []any
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		obj, err := newObject(head.APIVersion, head.Kind)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, head.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// The strict decoder is what makes this a schema check: show it refuses what the
// API server would.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc string }{
		{"fail/unknown-field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 3}\n"},
		{"fail/wrong-type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: https}]}\n"},
		{"fail/misplaced-field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, readOnlyRootFilesystem: true}]}}}\n"},
		{"fail/unknown-kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeManifests([]byte(tt.doc)); err == nil {
				t.Error("decoded without error")
			}
		})
	}
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	kdata, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(kdata, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind)
	}

	var (
		configMaps = map[string]map[string]string{}
		secrets    = map[string]map[string]string{}
		all        []any
	)
	for _, res := range k.Resources {
		data, err := os.ReadFile(filepath.Join(k8sDir, res))
		if err != nil {
			t.Fatalf("resource %s: %v", res, err)
		}
		objs, err := decodeManifests(data)
		if err != nil {
			t.Fatalf("%s: %v", res, err)
		}
		all = append(all, objs...)
		for _, o := range objs {
			switch o := o.(type) {
			case *corev1.Secret:
				secrets[o.Name] = o.StringData
			case *corev1.ConfigMap:
				configMaps[o.Name] = o.Data
			}
		}
	}
	for _, g := range k.ConfigMapGenerator {
		data := map[string]string{}
		for _, f := range g.Files {
			b, err := os.ReadFile(filepath.Join(k8sDir, f))
			if err != nil {
				t.Fatalf("configMapGenerator %s: %v", g.Name, err)
			}
			data[path.Base(f)] = string(b)
		}
		configMaps[g.Name] = data
	}
	checkManifests(t, all, configMaps, secrets)
}

// checkManifests checks a rendered deployment (the kustomize base, the Helm
// chart): probes, security context, that every mount resolves to a rendered
// ConfigMap or Secret key, that modgate.yaml loads and finds its files there, that
// the policy is the repository's, and that every selector selects the pods.
func checkManifests(t *testing.T, all []any, configMaps, secrets map[string]map[string]string) {
	t.Helper()
	var deploy *appsv1.Deployment
	for _, o := range all {
		if d, ok := o.(*appsv1.Deployment); ok {
			deploy = d
		}
	}
	if deploy == nil {
		t.Fatal("no Deployment among the resources")
	}
	pod := deploy.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	t.Run("probes", func(t *testing.T) {
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Error("liveness probe must GET /healthz")
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Error("readiness probe must GET /readyz")
		}
	})

	t.Run("security-context", func(t *testing.T) {
		psc, sc := pod.Spec.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Error("pod must run as a non-root user")
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("container root file system must be read-only")
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("privilege escalation must be off")
		}
		if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Error("all capabilities must be dropped")
		}
	})

	// Every mount names a volume, and every volume's ConfigMap or Secret exists.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			if _, ok := configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			if _, ok := secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
		}
	}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("volumeMount %s names no volume", m.Name)
		}
	}
	// fileAt resolves an absolute path in the container to the ConfigMap or Secret
	// key it is mounted from.
	fileAt := func(p string) (string, bool) {
		for _, m := range c.VolumeMounts {
			rel, err := filepath.Rel(m.MountPath, p)
			if err != nil || strings.HasPrefix(rel, "..") || strings.Contains(rel, "/") {
				continue
			}
			v := volumes[m.Name]
			switch {
			case v.ConfigMap != nil:
				s, ok := configMaps[v.ConfigMap.Name][rel]
				return s, ok
			case v.Secret != nil:
				s, ok := secrets[v.Secret.SecretName][rel]
				return s, ok
			}
		}
		return "", false
	}

	t.Run("modgate-config", func(t *testing.T) {
		if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
			t.Fatalf("args %q: want serve --config FILE", c.Args)
		}
		text, ok := fileAt(c.Args[2])
		if !ok {
			t.Fatalf("%s is not mounted from a ConfigMap", c.Args[2])
		}
		p := filepath.Join(t.TempDir(), "modgate.yaml")
		os.WriteFile(p, []byte(text), 0o644)
		cfg, err := config.Load(p)
		if err != nil {
			t.Fatalf("modgate.yaml in the ConfigMap: %v", err)
		}
		for key, file := range map[string]string{
			"tls.cert_file":                 cfg.TLS.CertFile,
			"tls.key_file":                  cfg.TLS.KeyFile,
			"tls.client_ca_file":            cfg.TLS.ClientCAFile,
			"database.url_file":             cfg.Database.URLFile,
			"storage.s3.access_key_file":    cfg.Storage.S3.AccessKeyFile,
			"storage.s3.secret_key_file":    cfg.Storage.S3.SecretKeyFile,
			"policy.dir (authz.rego in it)": filepath.Join(cfg.Policy.Dir, "authz.rego"),
		} {
			if _, ok := fileAt(file); !ok {
				t.Errorf("%s = %s: no ConfigMap or Secret key is mounted there", key, file)
			}
		}
		var scratchMounted bool
		for _, m := range c.VolumeMounts {
			if m.MountPath == cfg.Cache.Dir && volumes[m.Name].EmptyDir != nil {
				scratchMounted = true
			}
		}
		if !scratchMounted {
			t.Errorf("cache.dir %s is not an emptyDir mount (the root file system is read-only)", cfg.Cache.Dir)
		}
		_, port, _ := strings.Cut(cfg.Listen, ":")
		if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != port {
			t.Errorf("listen %s does not match containerPort %v", cfg.Listen, c.Ports)
		}
	})

	t.Run("policy-matches-repository", func(t *testing.T) {
		policyMap := ""
		for _, v := range pod.Spec.Volumes {
			if v.Name == "policy" && v.ConfigMap != nil {
				policyMap = v.ConfigMap.Name
			}
		}
		if len(configMaps[policyMap]) == 0 {
			t.Fatalf("no policy files in ConfigMap %q", policyMap)
		}
		for name, text := range configMaps[policyMap] {
			want, err := os.ReadFile(filepath.Join("..", "policy", name))
			if err != nil || string(want) != text {
				t.Errorf("the deployed policy file %s differs from policy/%s: copy it again", name, name)
			}
		}
		// A policy module or data file missing from the deployment would change
		// decisions as silently as a stale one.
		for _, pattern := range []string{"*.rego", "*.yaml"} {
			files, _ := filepath.Glob(filepath.Join("..", "policy", pattern))
			for _, f := range files {
				if _, ok := configMaps[policyMap][filepath.Base(f)]; !ok {
					t.Errorf("policy/%s is not deployed: add it to the policy ConfigMap", filepath.Base(f))
				}
			}
		}
	})

	t.Run("selectors", func(t *testing.T) {
		labels := pod.Labels
		matches := func(sel map[string]string) bool {
			for k, v := range sel {
				if labels[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}
		for _, o := range all {
			switch o := o.(type) {
			case *corev1.Service:
				if !matches(o.Spec.Selector) {
					t.Errorf("Service %s selects %v, not the pods %v", o.Name, o.Spec.Selector, labels)
				}
			case *policyv1.PodDisruptionBudget:
				if o.Spec.Selector == nil || !matches(o.Spec.Selector.MatchLabels) {
					t.Errorf("PodDisruptionBudget %s does not select the pods", o.Name)
				}
			case *networkingv1.NetworkPolicy:
				if !matches(o.Spec.PodSelector.MatchLabels) {
					t.Errorf("NetworkPolicy %s does not select the pods", o.Name)
				}
			case *autoscalingv2.HorizontalPodAutoscaler:
				if o.Spec.ScaleTargetRef.Kind != "Deployment" || o.Spec.ScaleTargetRef.Name != deploy.Name {
					t.Errorf("HorizontalPodAutoscaler %s targets %+v", o.Name, o.Spec.ScaleTargetRef)
				}
			}
		}
		if !matches(deploy.Spec.Selector.MatchLabels) {
			t.Error("the Deployment's selector does not match its pod template")
		}
	})
}

// The compose file parses, has the services the evaluation needs, and its
// modgate.yaml is a valid configuration.
func TestComposeEvaluation(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `json:"image"`
			Volumes []string `json:"volumes"`
		} `json:"services"`
	}
	// yaml.v3 resolves the anchors and merge keys compose files use.
	var raw any
	if err := yamlv3.Unmarshal(data, &raw); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	js, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(js, &compose); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "minio", "bucket", "certs", "modgate-1", "modgate-2"} {
		if _, ok := compose.Services[name]; !ok {
			t.Errorf("compose.yaml: no service %s", name)
		}
	}
	if vols := compose.Services["modgate-2"].Volumes; len(vols) == 0 || !strings.HasPrefix(vols[0], "./modgate.yaml:") {
		t.Errorf("modgate-2 does not mount ./modgate.yaml: %q", vols)
	}
	cfg, err := config.Load("compose/modgate.yaml")
	if err != nil {
		t.Fatalf("compose/modgate.yaml: %v", err)
	}
	if cfg.Storage.Backend != "s3" {
		t.Errorf("compose/modgate.yaml: storage.backend %q, want s3", cfg.Storage.Backend)
	}
}
