package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// A CA bundle ConfigMap is read again whenever the metadata cache shows it
// at another version or UID, and never served once it is gone.
func TestCABundlesFollowTheConfigMapVersion(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", UID: "uid-1"}, Data: map[string]string{"ca.crt": "v1"}}
	meta := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cm).Build()
	nn := types.NamespacedName{Namespace: "ns", Name: "ca"}
	var b caBundles
	if _, ok := b.lookup(ctx, meta, nn, "ca.crt"); ok {
		t.Fatal("a bundle never read was served")
	}
	read := &corev1.ConfigMap{}
	if err := meta.Get(ctx, nn, read); err != nil {
		t.Fatal(err)
	}
	b.keep(read, "ca.crt", []byte("v1"))
	if pem, ok := b.lookup(ctx, meta, nn, "ca.crt"); !ok || string(pem) != "v1" {
		t.Fatalf("the kept bundle at the same version: %q %v, want v1", pem, ok)
	}
	if _, ok := b.lookup(ctx, meta, nn, "other.crt"); ok {
		t.Error("a key never read was served")
	}
	read.Data["ca.crt"] = "v2"
	if err := meta.Update(ctx, read); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.lookup(ctx, meta, nn, "ca.crt"); ok {
		t.Error("the old bundle was served after the ConfigMap changed")
	}
	if err := meta.Delete(ctx, read); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.lookup(ctx, meta, nn, "ca.crt"); ok {
		t.Error("a bundle was served after its ConfigMap was deleted")
	}
	// Recreated under the same name at a version that happens to match:
	// the UID tells them apart.
	again := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", UID: "uid-2"}, Data: map[string]string{"ca.crt": "v3"}}
	b.keep(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ca", UID: "uid-1", ResourceVersion: "1"}}, "ca.crt", []byte("v1"))
	if err := meta.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.lookup(ctx, meta, nn, "ca.crt"); ok {
		t.Error("a bundle of the deleted ConfigMap was served for its successor")
	}
}
