// Package crd holds the generated CustomResourceDefinitions of
// config/crd/bases, built into programs that validate offline (kubectl
// tokenwarden check) so that they use the very schema and CEL rules the API
// server enforces, without a copy to keep in step.
package crd

import "embed"

// Bases holds bases/*.yaml.
//
//go:embed bases/*.yaml
var Bases embed.FS
