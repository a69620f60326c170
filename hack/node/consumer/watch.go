package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// watchValue follows one key of a Secret of the Pod's namespace through
// the API watch (re-established when it ends) and returns a function that
// reads its latest value.
func watchValue(ctx context.Context, name, key string) (func() string, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("-watch-secret: %w", err)
	}
	ns, err := os.ReadFile(namespaceFile)
	if err != nil {
		return nil, fmt.Errorf("-watch-secret: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	secrets := cs.CoreV1().Secrets(strings.TrimSpace(string(ns)))
	var current atomic.Value
	current.Store("")
	go func() {
		for ctx.Err() == nil {
			w, err := secrets.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
			if err != nil {
				fmt.Fprintf(os.Stderr, "consumer: watch secret %s: %v\n", name, err)
				time.Sleep(time.Second)
				continue
			}
			for ev := range w.ResultChan() {
				if s, ok := ev.Object.(*corev1.Secret); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
					current.Store(string(s.Data[key]))
				}
			}
		}
	}()
	return func() string { return current.Load().(string) }, nil
}
