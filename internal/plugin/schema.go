package plugin

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/tokenwarden/tokenwarden/api/v1alpha1"
	"github.com/tokenwarden/tokenwarden/config/crd"
)

// crdFiles are config/crd/bases, built in, so that `check` validates
// offline against the very schema and CEL rules the API server enforces.
var crdFiles = crd.Bases

// schemaValidator validates one kind as the API server does on create:
// unknown fields (kubectl's default strict field validation), defaults,
// the OpenAPI schema, list-type invariants and the CEL rules.
type schemaValidator struct {
	kind       string
	namespaced bool
	structural *structuralschema.Structural
	openAPI    apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// loadSchemas reads the embedded CRDs into validators by kind.
func loadSchemas() (map[string]*schemaValidator, error) {
	entries, err := fs.Glob(crdFiles, "bases/*.yaml")
	if err != nil {
		return nil, err
	}
	out := map[string]*schemaValidator{}
	for _, name := range entries {
		data, err := crdFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			return nil, fmt.Errorf("reading the embedded CRD %s: %w", path.Base(name), err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name != authv1alpha1.GroupVersion.Version || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			sv, err := newSchemaValidator(crd.Spec.Names.Kind, crd.Spec.Scope == apiextensionsv1.NamespaceScoped, v.Schema.OpenAPIV3Schema)
			if err != nil {
				return nil, fmt.Errorf("the embedded CRD %s: %w", path.Base(name), err)
			}
			out[sv.kind] = sv
		}
	}
	return out, nil
}

func newSchemaValidator(kind string, namespaced bool, v1schema *apiextensionsv1.JSONSchemaProps) (*schemaValidator, error) {
	internal := &apiextensionsinternal.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1schema, internal, nil); err != nil {
		return nil, err
	}
	s, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, err
	}
	openAPI, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, err
	}
	return &schemaValidator{
		kind:       kind,
		namespaced: namespaced,
		structural: s,
		openAPI:    openAPI,
		cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
	}, nil
}

// validate applies defaults to obj in place, as the API server does before
// it validates, and returns every problem the API server would report on
// create, with its field path and message. Unknown fields are reported as
// errors: kubectl apply uses strict field validation by default.
func (v *schemaValidator) validate(ctx context.Context, obj *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if obj.GetKind() != v.kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), obj.GetKind(), "must be "+v.kind))
	}
	if gv := authv1alpha1.GroupVersion.String(); obj.GetAPIVersion() != gv {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), obj.GetAPIVersion(), "must be "+gv))
	}
	unknown := pruning.PruneWithOptions(obj.Object, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range unknown {
		errs = append(errs, field.Invalid(field.NewPath(p), nil, fmt.Sprintf("unknown field %q", p)))
	}
	structuraldefaulting.Default(obj.Object, v.structural)
	errs = append(errs, v.validateMeta(obj)...)
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj.Object, v.openAPI)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, obj.Object, v.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj.Object)...)
	if blocking(errs) {
		// The API server does not run the CEL rules over an object that
		// failed this way, and says so.
		return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
	}
	celErrs, _ := v.cel.Validate(ctx, nil, v.structural, obj.Object, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// validateMeta checks the name and namespace as the API server does for a
// custom resource. The namespace may be missing from a file (kubectl fills
// it in from the context).
func (v *schemaValidator) validateMeta(obj *unstructured.Unstructured) field.ErrorList {
	meta := &metav1.ObjectMeta{Name: obj.GetName(), Namespace: obj.GetNamespace(), GenerateName: obj.GetGenerateName()}
	if v.namespaced && meta.Namespace == "" {
		meta.Namespace = "default"
	}
	errs := apimachineryvalidation.ValidateObjectMeta(meta, v.namespaced, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	if !v.namespaced && obj.GetNamespace() != "" {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "namespace"), v.kind+" is cluster-scoped: remove metadata.namespace"))
	}
	return errs
}

// blocking says whether errs holds an error after which the API server
// does not run the CEL rules (a missing or unsupported value, a value too
// long or too many, a wrong type).
func blocking(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}
