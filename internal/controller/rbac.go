package controller

// The operator's cluster permissions, generated into config/rbac/role.yaml.
// Secrets: list/watch serve the cache of the Secrets tokenwarden owns
// (label-selected) and the metadata-only watch of source Secrets; get reads
// a source Secret when a token is requested; create/update/patch write target
// Secrets. There is no delete: target Secrets go with their APICredential
// through the owner reference. ConfigMaps: get reads a CA bundle when a
// token is requested; list/watch serve their metadata-only watch.
// apicredentials/finalizers: update lets the operator set a blocking owner
// reference on a target Secret where the API server enforces owner-reference
// permissions (the OwnerReferencesPermissionEnforcement admission plugin).
//
// TokenProviders and ClusterTokenProviders: read, status, and finalizers
// for the owner reference on their token Secrets. Namespaces: list/watch of
// their metadata decide which namespaces a ClusterTokenProvider's selector
// allows (a cluster-wide install only).
//
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=apicredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=tokenproviders;clustertokenproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=tokenproviders/status;clustertokenproviders/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=tokenproviders/finalizers;clustertokenproviders/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=apicredentials,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.tokenwarden.io,resources=apicredentials/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
