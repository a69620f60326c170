// Package monitoringcrds pins the Prometheus Operator's API types
// (monitoring.coreos.com/v1) that test/chart turns into CRDs with
// controller-gen, so that the chart's ServiceMonitor and PrometheusRule are
// dry-run against their real schemas. It is its own Go module so that the
// operator's go.mod does not take on that dependency.
package monitoringcrds

import (
	// The package controller-gen reads.
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
