// Package metrics holds tokenwarden's Prometheus metrics. Labels carry
// namespaces, names, hosts, status codes and closed-set reasons only; never
// a value read from a Secret or returned by a provider.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, listed in docs/reference.md.
const (
	TokenExpiry             = "tokenwarden_token_expiry_timestamp_seconds"
	NextRefresh             = "tokenwarden_next_refresh_timestamp_seconds"
	RefreshAttempts         = "tokenwarden_refresh_attempts_total"
	ProviderRequestDuration = "tokenwarden_provider_request_duration_seconds"
	ProviderRateLimited     = "tokenwarden_provider_rate_limited_total"
	ClientCertificateExpiry = "tokenwarden_client_certificate_expiry_timestamp_seconds"
	HostWaiting             = "tokenwarden_host_waiting_credentials"
	ProviderTokenExpiry     = "tokenwarden_provider_token_expiry_timestamp_seconds"
	ProviderNextRefresh     = "tokenwarden_provider_next_refresh_timestamp_seconds"
	ProviderConsumers       = "tokenwarden_provider_consumers"
)

// Metrics records what tokenwarden does. A nil *Metrics records nothing.
type Metrics struct {
	tokenExpiry     *prometheus.GaugeVec
	nextRefresh     *prometheus.GaugeVec
	attempts        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	rateLimited     *prometheus.CounterVec
	certExpiry      *prometheus.GaugeVec
	hostWaiting     *prometheus.GaugeVec

	providerExpiry    *prometheus.GaugeVec
	providerNext      *prometheus.GaugeVec
	providerConsumers *prometheus.GaugeVec
}

// New creates the metrics and registers them with reg (controller-runtime's
// metrics.Registry in the manager).
func New(reg prometheus.Registerer) *Metrics {
	perCredential := []string{"namespace", "name"}
	m := &Metrics{
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: TokenExpiry,
			Help: "Unix time at which the token in the target Secret expires.",
		}, perCredential),
		nextRefresh: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NextRefresh,
			Help: "Unix time of the next planned token request.",
		}, perCredential),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RefreshAttempts,
			Help: "Token refresh attempts by result (success, failure) and reason (a Degraded condition reason, or RefreshSucceeded).",
		}, []string{"result", "reason"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    ProviderRequestDuration,
			Help:    "Duration of token requests by token host and HTTP status code (0 when no response arrived).",
			Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"host", "code"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ProviderRateLimited,
			Help: "429 answers by token host.",
		}, []string{"host"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ClientCertificateExpiry,
			Help: "Unix time at which the client certificate of the credential expires.",
		}, perCredential),
	}
	m.hostWaiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: HostWaiting,
		Help: "Credentials whose refresh is due but held back by their token host (429 cool-down, a failing host's probe, the in-flight limit or the per-host budget).",
	}, []string{"host"})
	perProvider := []string{"kind", "namespace", "name"}
	m.providerExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: ProviderTokenExpiry,
		Help: "Unix time at which the token of a TokenProvider or ClusterTokenProvider expires (namespace is empty for a ClusterTokenProvider).",
	}, perProvider)
	m.providerNext = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: ProviderNextRefresh,
		Help: "Unix time of a provider's next planned token request.",
	}, perProvider)
	m.providerConsumers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: ProviderConsumers,
		Help: "APICredentials that name a provider and may take its token.",
	}, perProvider)
	reg.MustRegister(m.tokenExpiry, m.nextRefresh, m.attempts, m.requestDuration, m.rateLimited, m.certExpiry, m.hostWaiting,
		m.providerExpiry, m.providerNext, m.providerConsumers)
	return m
}

// ObserveRequest records one token request; it fits auth.Options.Observe.
func (m *Metrics) ObserveRequest(host string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requestDuration.WithLabelValues(host, strconv.Itoa(code)).Observe(d.Seconds())
	if code == 429 {
		m.rateLimited.WithLabelValues(host).Inc()
	}
}

// Attempt counts one refresh attempt.
func (m *Metrics) Attempt(success bool, reason string) {
	if m == nil {
		return
	}
	result := "failure"
	if success {
		result = "success"
	}
	m.attempts.WithLabelValues(result, reason).Inc()
}

// SetCredential records the per-credential timestamps; a zero time removes
// the series.
func (m *Metrics) SetCredential(namespace, name string, tokenExpiry, nextRefresh, certExpiry time.Time) {
	if m == nil {
		return
	}
	set(m.tokenExpiry, namespace, name, tokenExpiry)
	set(m.nextRefresh, namespace, name, nextRefresh)
	set(m.certExpiry, namespace, name, certExpiry)
}

// Forget removes the series of a deleted credential.
func (m *Metrics) Forget(namespace, name string) {
	if m == nil {
		return
	}
	for _, g := range []*prometheus.GaugeVec{m.tokenExpiry, m.nextRefresh, m.certExpiry} {
		g.DeleteLabelValues(namespace, name)
	}
}

func set(g *prometheus.GaugeVec, namespace, name string, t time.Time) {
	if t.IsZero() {
		g.DeleteLabelValues(namespace, name)
		return
	}
	g.WithLabelValues(namespace, name).Set(float64(t.Unix()))
}

// SetHostWaiting records how many credentials wait for host.
func (m *Metrics) SetHostWaiting(host string, n int) {
	if m == nil {
		return
	}
	if n == 0 {
		m.hostWaiting.DeleteLabelValues(host)
		return
	}
	m.hostWaiting.WithLabelValues(host).Set(float64(n))
}

// SetProvider records a provider's token expiry, next refresh and consumer
// count; a zero time removes its series.
func (m *Metrics) SetProvider(kind, namespace, name string, tokenExpiry, nextRefresh time.Time, consumers int) {
	if m == nil {
		return
	}
	for g, t := range map[*prometheus.GaugeVec]time.Time{m.providerExpiry: tokenExpiry, m.providerNext: nextRefresh} {
		if t.IsZero() {
			g.DeleteLabelValues(kind, namespace, name)
		} else {
			g.WithLabelValues(kind, namespace, name).Set(float64(t.Unix()))
		}
	}
	m.providerConsumers.WithLabelValues(kind, namespace, name).Set(float64(consumers))
}

// ForgetProvider removes the series of a deleted provider.
func (m *Metrics) ForgetProvider(kind, namespace, name string) {
	if m == nil {
		return
	}
	for _, g := range []*prometheus.GaugeVec{m.providerExpiry, m.providerNext, m.providerConsumers} {
		g.DeleteLabelValues(kind, namespace, name)
	}
}
