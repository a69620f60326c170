// Command promqlnames parses PromQL expressions with Prometheus's own parser
// and prints the metric names each one selects. It is its own Go module so
// that the operator's go.mod does not take on github.com/prometheus/prometheus
// and the versions it requires; test/monitoring builds and runs it.
//
// Input on stdin: a JSON array of expressions. Output on stdout: a JSON array
// of {"names": [...]} or {"error": "..."}, one per expression, in order. A
// selector without a metric name is reported as the name "".
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Names []string `json:"names"`
	Error string   `json:"error,omitempty"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promqlnames: reading a JSON array of expressions from stdin:", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		ast, err := p.ParseExpr(e)
		if err != nil {
			out = append(out, result{Names: []string{}, Error: err.Error()})
			continue
		}
		names := []string{}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				names = append(names, metricName(vs))
			}
			return nil
		})
		out = append(out, result{Names: names})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "promqlnames:", err)
		os.Exit(1)
	}
}

// metricName is the name a selector selects: its name, or the value of an
// equality matcher on __name__.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == "__name__" && m.Type.String() == "=" {
			return m.Value
		}
	}
	return ""
}
