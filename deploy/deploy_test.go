package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func load(t *testing.T) *Set {
	t.Helper()
	s, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// container is the Deployment's one container.
func container(t *testing.T, s *Set) corev1.Container {
	t.Helper()
	cs := s.Deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(cs))
	}
	return cs[0]
}

// TestEveryManifestIsInTheBase: each YAML file of the folder is a resource
// of the kustomization, so none is forgotten by "kubectl apply -k".
func TestEveryManifestIsInTheBase(t *testing.T) {
	s := load(t)
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := f.Name()
		if !strings.HasSuffix(name, ".yaml") || name == "kustomization.yaml" {
			continue
		}
		if _, ok := s.Files[name]; !ok {
			t.Errorf("%s is not among the kustomization's resources", name)
		}
	}
}

// TestKubectlRendersTheSameObjects: where kubectl is installed, its
// built-in Kustomize renders the base into the objects Load reads.
func TestKubectlRendersTheSameObjects(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", ".").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	var rendered []string
	for _, doc := range splitDocuments(out) {
		var head struct{ Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		rendered = append(rendered, head.Kind)
	}
	var loaded []string
	for _, kinds := range load(t).Files {
		loaded = append(loaded, kinds...)
	}
	slices.Sort(rendered)
	slices.Sort(loaded)
	if !slices.Equal(rendered, loaded) {
		t.Errorf("kubectl kustomize renders %v, Load reads %v", rendered, loaded)
	}
}

// TestReplicasSurviveADisruption: at least two replicas, a rolling update
// that never goes below them, spread over nodes, and a disruption budget
// over the same pods.
func TestReplicasSurviveADisruption(t *testing.T) {
	s := load(t)
	d := s.Deployment
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %v, want at least 2", d.Spec.Replicas)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != "RollingUpdate" || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("the rolling update may take a replica away before its successor is ready (want maxUnavailable 0)")
	}
	labels := d.Spec.Template.Labels
	for k, v := range d.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pods", k, v)
		}
	}
	if s.PDB.Spec.MinAvailable == nil || *s.PDB.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("the PodDisruptionBudget's minAvailable is %v, want 1", s.PDB.Spec.MinAvailable)
	}
	if s.PDB.Spec.MaxUnavailable != nil {
		t.Error("the PodDisruptionBudget sets maxUnavailable besides minAvailable")
	}
	if !selects(s.PDB.Spec.Selector.MatchLabels, labels) || len(s.PDB.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the Deployment's pods %v", s.PDB.Spec.Selector.MatchLabels, labels)
	}
	if !selects(s.Service.Spec.Selector, labels) {
		t.Errorf("the Service's selector %v does not select the Deployment's pods %v", s.Service.Spec.Selector, labels)
	}
	spread := d.Spec.Template.Spec.TopologySpreadConstraints
	if len(spread) == 0 || !selects(spread[0].LabelSelector.MatchLabels, labels) {
		t.Error("the replicas are not spread over nodes")
	}
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// TestProbes: started is /healthz (with time for the migration lock),
// alive is /healthz, which does not depend on the database, and ready is
// /readyz, which does.
func TestProbes(t *testing.T) {
	c := container(t, load(t))
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("the %s probe asks %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if p.probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("the %s probe asks port %v, want the container's port \"http\"", p.name, p.probe.HTTPGet.Port)
		}
	}
	// The readiness check pings the database for up to 2 s.
	if r := c.ReadinessProbe; r != nil && r.TimeoutSeconds <= 2 {
		t.Errorf("the readiness probe gives up after %d s, before the server's 2 s database ping", r.TimeoutSeconds)
	}
	// A replica waits up to 300 s for the migration lock before it listens.
	if s := c.StartupProbe; s != nil && s.PeriodSeconds*s.FailureThreshold < 300 {
		t.Errorf("the startup probe gives up after %d s, before the migration lock's 300 s", s.PeriodSeconds*s.FailureThreshold)
	}
}

// TestSecretsComeFromASecret: the database URL and the master key are
// read from a Secret, never written in the manifest.
func TestSecretsComeFromASecret(t *testing.T) {
	c := container(t, load(t))
	refs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	for _, name := range []string{"DATABASE_URL", "SMARTAUTH_MASTER_KEY"} {
		if refs[name] == "" {
			t.Errorf("%s does not come from a Secret", name)
		}
	}
	for _, e := range c.Env {
		if e.Name == "DATABASE_URL" && !strings.HasPrefix(refs[e.Name], "smartauth/") {
			t.Errorf("DATABASE_URL comes from %s, want the Secret smartauth", refs[e.Name])
		}
	}
	if len(c.EnvFrom) > 0 {
		t.Error("envFrom hides which settings the container gets")
	}
}

// TestRunsLocked: not root, no privilege escalation, no capabilities, a
// read-only root file system, no API token mounted.
func TestRunsLocked(t *testing.T) {
	s := load(t)
	pod := s.Deployment.Spec.Template.Spec
	c := container(t, s)
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod may run as root")
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("the container has no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the root file system is writable")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("privilege escalation is allowed")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Error("the container keeps capabilities (want drop: [ALL] and none added)")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod gets a Kubernetes API token it never uses")
	}
	if len(c.VolumeMounts) > 0 {
		t.Error("the container mounts volumes; with PostgreSQL it writes nothing to disk")
	}
}

// TestResources: requests and limits are set, the memory limit holds the
// measured peak (some 150 MiB with people signing in on two cores), and
// the CPU limit, which is also GOMAXPROCS and so the number of password
// hashes at once, is a whole number of CPUs.
func TestResources(t *testing.T) {
	c := container(t, load(t))
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		r, l := req[name], lim[name]
		if r.IsZero() || l.IsZero() {
			t.Errorf("%s has no request or no limit", name)
		}
		if r.Cmp(l) > 0 {
			t.Errorf("%s request %s exceeds its limit %s", name, r.String(), l.String())
		}
	}
	if m := lim[corev1.ResourceMemory]; m.Cmp(resource.MustParse("256Mi")) < 0 {
		t.Errorf("memory limit %s leaves too little above the measured 150 MiB peak", m.String())
	}
	if cpu := lim[corev1.ResourceCPU]; cpu.MilliValue()%1000 != 0 {
		t.Errorf("CPU limit %s is not a whole number of CPUs", cpu.String())
	}
}

// TestImageMatchesDockerfile: the port, the user and the command are the
// image's, and the listening address's port is the container port.
func TestImageMatchesDockerfile(t *testing.T) {
	s := load(t)
	c := container(t, s)
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	expose := regexp.MustCompile(`(?m)^EXPOSE (\d+)$`).FindStringSubmatch(df)
	if expose == nil {
		t.Fatal("the Dockerfile exposes no port")
	}
	port, _ := strconv.Atoi(expose[1])
	if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port || c.Ports[0].Name != "http" {
		t.Errorf("container ports %v, want one named http on the image's port %d", c.Ports, port)
	}
	if tp := s.Service.Spec.Ports; len(tp) != 1 || tp[0].TargetPort != intstr.FromString("http") {
		t.Errorf("the Service does not forward to the container port http: %v", tp)
	}
	for _, e := range c.Env {
		if e.Name == "SMARTAUTH_ADDR" && !strings.HasSuffix(e.Value, ":"+expose[1]) {
			t.Errorf("SMARTAUTH_ADDR %s does not listen on the image's port %d", e.Value, port)
		}
	}
	if !strings.Contains(df, "--chown=65532:65532") || !strings.Contains(df, "USER nonroot") {
		t.Fatal("the Dockerfile's user is no longer nonroot (65532)")
	}
	pod := s.Deployment.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsUser == nil || *pod.RunAsUser != 65532 {
		t.Error("the pod does not run as the image's user 65532")
	}
	if c.Image != "smartauth" && !strings.HasPrefix(c.Image, "smartauth:") {
		t.Errorf("image %q; the base names it smartauth, which an overlay's images: replaces", c.Image)
	}
	if len(c.Command) > 0 {
		t.Error("the container replaces the image's entrypoint")
	}
	if !bytes.Contains(b, []byte(`CMD ["serve"]`)) || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("the container runs %v, want serve as the image does", c.Args)
	}
}

// TestShutdownFitsTheGracePeriod: the server's shutdown delay, during which
// it serves while failing readiness, and its 20 s drain both fit in the
// termination grace period.
func TestShutdownFitsTheGracePeriod(t *testing.T) {
	s := load(t)
	c := container(t, s)
	var delay time.Duration
	for _, e := range c.Env {
		if e.Name == "SMARTAUTH_SHUTDOWN_DELAY" {
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("SMARTAUTH_SHUTDOWN_DELAY %q: %v", e.Value, err)
			}
			delay = d
		}
	}
	if delay < 2*time.Second {
		t.Errorf("shutdown delay %v: a terminating replica would close its port while the Service still sends it requests", delay)
	}
	grace := s.Deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second < delay+20*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v is shorter than the %v delay and the server's 20 s drain", grace, delay)
	}
}
