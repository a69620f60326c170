package controller

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/internal/failure"
	"github.com/tokenwarden/tokenwarden/internal/refresh"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

// stateReasons are the condition reasons that describe a state, not a
// failure: they need no entry in the failure table.
var stateReasons = []string{
	authv1alpha1.ReasonTokenValid, authv1alpha1.ReasonNotIssued, authv1alpha1.ReasonTokenExpired,
	authv1alpha1.ReasonSuspended, authv1alpha1.ReasonRefreshSucceeded, authv1alpha1.ReasonTokenExpiringSoon,
	// PodsSynced's reasons: whether Pods were told, never a failed attempt.
	authv1alpha1.ReasonPodsSynced, authv1alpha1.ReasonPodSyncForbidden, authv1alpha1.ReasonPodSyncFailed,
}

// apiReasons reads every Reason* constant of api/v1alpha1 from the source,
// so that a reason added there without a failure entry fails this test.
func apiReasons(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(testenv.Root(), "api", "v1alpha1")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Reason") || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						out[name.Name] = v
					}
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no Reason constants found in api/v1alpha1")
	}
	return out
}

// One vocabulary: every condition reason of the API is either a state or a
// failure with an entry in the table, and every failure in the table is a
// reason of the API, with a retry class, an event and a known event reason.
func TestFailureTableCoversEveryReason(t *testing.T) {
	api := apiReasons(t)
	values := map[string]bool{}
	for name, v := range api {
		values[v] = true
		if slices.Contains(stateReasons, v) {
			if _, ok := failure.Of(failure.Reason(v)); ok {
				t.Errorf("%s (%q) is both a state and a failure", name, v)
			}
			continue
		}
		if _, ok := failure.Of(failure.Reason(v)); !ok {
			t.Errorf("api/v1alpha1.%s (%q) has no entry in internal/failure's table", name, v)
		}
	}
	events := []string{failure.EventRefreshFailed, failure.EventRateLimited, failure.EventTargetConflict}
	for _, r := range failure.Reasons() {
		if !values[string(r)] {
			t.Errorf("failure %q is not a Reason constant of api/v1alpha1", r)
		}
		sem, _ := failure.Of(r)
		if sem.Retry == refresh.None {
			t.Errorf("failure %q has no retry class", r)
		}
		if !slices.Contains(events, sem.Event) {
			t.Errorf("failure %q raises unknown event %q", r, sem.Event)
		}
	}
	if _, ok := failure.Of("SomethingNew"); ok {
		t.Error("an unknown reason has semantics")
	}
}

// A Degraded reason this version does not know (written by another one)
// is not silently taken for a credentials failure: the schedule decides.
func TestLastFailureOfUnknownReasonIsNone(t *testing.T) {
	s := authv1alpha1.TokenStatus{ConsecutiveFailures: 3, Conditions: []metav1.Condition{{
		Type: authv1alpha1.ConditionDegraded, Status: "True", Reason: "FromTheFuture",
	}}}
	if got := lastFailure(s); got != refresh.None {
		t.Errorf("lastFailure = %v, want None", got)
	}
	s.Conditions[0].Reason = authv1alpha1.ReasonInvalidSpec
	if got := lastFailure(s); got != refresh.Spec {
		t.Errorf("lastFailure = %v, want Spec", got)
	}
}
