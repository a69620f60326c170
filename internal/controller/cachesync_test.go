package controller

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
)

func TestOwnWritesReleaseOnlyTheWrittenVersion(t *testing.T) {
	w := &ownWrites{
		kinds:   map[reflect.Type]bool{reflect.TypeOf(&corev1.Secret{}): true},
		waiting: map[writeKey]map[chan struct{}]string{},
	}
	sec := func(name, rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
	}
	if ch := w.expect(&authv1alpha1.APICredential{}, "1"); ch != nil {
		t.Fatal("a wait registered for a kind no informer reports; it could only time out")
	}
	ch := w.expect(sec("a", "7"), "7")
	closed := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	w.seen(sec("a", "6")) // an older event still in flight
	w.seen(sec("b", "7")) // another object at the same version
	w.seen(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", ResourceVersion: "7"}})
	if closed() {
		t.Fatal("released by an event that is not the write")
	}
	w.seen(sec("a", "7"))
	if !closed() {
		t.Fatal("not released by the written version")
	}
	w.forget(sec("a", "7"), ch)
	if len(w.waiting) != 0 {
		t.Errorf("%d keys still waiting after forget, want 0", len(w.waiting))
	}
	// A wait that times out is forgotten too.
	late := w.expect(sec("c", "9"), "9")
	w.forget(sec("c", "9"), late)
	if len(w.waiting) != 0 {
		t.Errorf("%d keys still waiting after a forgotten wait, want 0", len(w.waiting))
	}
}
