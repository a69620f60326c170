// Package v1alpha1 holds the APICredential API of tokenwarden.
//
// +kubebuilder:object:generate=true
// +groupName=auth.tokenwarden.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the APICredential API.
	GroupVersion = schema.GroupVersion{Group: "auth.tokenwarden.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
