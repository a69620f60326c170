// Package v1alpha1 holds the APICredential API of tokenwarden.
//
// +kubebuilder:object:generate=true
// +groupName=auth.tokenwarden.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the APICredential API.
	GroupVersion = schema.GroupVersion{Group: "auth.tokenwarden.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &schemeBuilder{}

	// AddToScheme adds the API types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// schemeBuilder is controller-runtime's deprecated scheme.Builder on
// apimachinery alone, so that importing the API types does not pull in
// controller-runtime.
//
// +kubebuilder:object:generate=false
type schemeBuilder struct {
	runtime.SchemeBuilder
}

// Register adds objs to the group version when the scheme is built.
func (b *schemeBuilder) Register(objs ...runtime.Object) {
	b.SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, objs...)
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})
}
