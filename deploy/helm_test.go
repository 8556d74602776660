package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/modgate/modgate/internal/config"
)

const chartDir = "helm/modgate"

// helmBinary returns the pinned helm that .ci/tools builds from the Go module
// proxy (make test runs it first, so here it only prints the cached path).
func helmBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("bash", "../.ci/tools", "helm").Output()
	if err != nil {
		t.Fatalf(".ci/tools helm: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// helmTemplate renders the chart with the test values plus extra --set flags.
func helmTemplate(t *testing.T, helm string, set ...string) []any {
	t.Helper()
	args := []string{"template", "modgate", chartDir, "--namespace", "modgate", "-f", filepath.Join(chartDir, "ci/test-values.yaml")}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out := runTool(t, ".", helm, args...)
	// decodeManifests splits on "\n---\n"; keep the newline that ends a document's
	// last block scalar (a policy file's final newline).
	objs, err := decodeManifests([]byte("\n" + strings.ReplaceAll(out, "\n---\n", "\n\n---\n")))
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(set, " "), err, out)
	}
	return objs
}

// The chart passes helm lint, and what it renders decodes strictly into the
// Kubernetes API types and passes the checks the kustomize base passes, with
// the same modgate configuration.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	helm := helmBinary(t)
	runTool(t, ".", helm, "lint", "--strict", chartDir, "-f", filepath.Join(chartDir, "ci/test-values.yaml"))

	objs := helmTemplate(t, helm)
	configMaps := map[string]map[string]string{}
	secrets := map[string]map[string]string{}
	kinds := map[string]int{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o.Data
		case *corev1.Secret:
			secrets[o.Name] = o.StringData
		}
		kinds[reflect.TypeOf(o).Elem().Name()]++
	}
	for kind, n := range map[string]int{"ServiceAccount": 1, "ConfigMap": 2, "Secret": 4, "Deployment": 1,
		"Service": 1, "PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 1} {
		if kinds[kind] != n {
			t.Errorf("rendered %d %s, want %d", kinds[kind], kind, n)
		}
	}
	checkManifests(t, objs, configMaps, secrets)

	t.Run("same-config-as-kustomize", func(t *testing.T) {
		helmCfg := loadConfigText(t, configMaps["modgate-config"]["modgate.yaml"])
		kustCfg := loadConfigFile(t, filepath.Join(k8sDir, "modgate.yaml"))
		if helmCfg.Private.Patterns != "corp.example/*,git.corp.example" {
			t.Errorf("config.private.patterns from values: %q", helmCfg.Private.Patterns)
		}
		helmCfg.Private = kustCfg.Private // the test values add private patterns
		if !reflect.DeepEqual(helmCfg, kustCfg) {
			t.Errorf("the chart's modgate.yaml differs from deploy/kubernetes/modgate.yaml:\n helm %+v\n kust %+v", helmCfg, kustCfg)
		}
	})

	t.Run("existing-secrets-no-autoscaling-disk", func(t *testing.T) {
		objs := helmTemplate(t, helm, "tls.existingSecret=corp-tls", "clientCA.existingSecret=corp-ca",
			"database.existingSecret=corp-db", "s3.enabled=false", "autoscaling.enabled=false", "replicaCount=1",
			"policy.existingConfigMap=corp-policy", "networkPolicy.enabled=false", "podDisruptionBudget.enabled=false")
		var d *appsv1.Deployment
		for _, o := range objs {
			switch o := o.(type) {
			case *corev1.Secret, *autoscalingv2.HorizontalPodAutoscaler:
				t.Errorf("rendered %T with existing Secrets and autoscaling off", o)
			case *appsv1.Deployment:
				d = o
			case *corev1.ConfigMap:
				if o.Name != "modgate-config" {
					t.Errorf("rendered ConfigMap %s with policy.existingConfigMap set", o.Name)
				} else if cfg := loadConfigText(t, o.Data["modgate.yaml"]); cfg.Storage.Backend != "disk" {
					t.Errorf("s3.enabled=false: storage.backend %q", cfg.Storage.Backend)
				}
			}
		}
		if d == nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Fatalf("Deployment replicas: want 1 without autoscaling")
		}
		var names []string
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				names = append(names, v.Secret.SecretName)
			}
			if v.ConfigMap != nil {
				names = append(names, v.ConfigMap.Name)
			}
		}
		for _, want := range []string{"corp-tls", "corp-ca", "corp-db", "corp-policy"} {
			if !slices.Contains(names, want) {
				t.Errorf("volumes %q lack %s", names, want)
			}
		}
	})

	t.Run("missing-secret-is-an-error", func(t *testing.T) {
		cmd := exec.Command(helm, "template", "modgate", chartDir)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "tls.cert (PEM) or tls.existingSecret is required") {
			t.Errorf("helm template without values: err %v, output %s", err, out)
		}
	})
}

func loadConfigText(t *testing.T, text string) config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "modgate.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return loadConfigFile(t, p)
}

func loadConfigFile(t *testing.T, p string) config.Config {
	t.Helper()
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	cfg.Replica = "" // the host name
	return cfg
}
