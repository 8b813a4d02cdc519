package server_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/server/servertest"
)

// apiRoutes reads the admin API's routes, "METHOD /admin/api/v1/…", from
// the route table's source, so that the check below sees exactly what
// routes.go registers.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "routes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		if _, path, _ := strings.Cut(pattern, " "); strings.HasPrefix(path, "/admin/api/v1/") {
			out = append(out, pattern)
		}
		return true
	})
	if len(out) == 0 {
		t.Fatal("found no admin API routes in routes.go")
	}
	return out
}

// openAPIDoc is the part of the OpenAPI document the checks read.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
	} `json:"components"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestAdminAPIDocumented keeps the OpenAPI document and the route table in
// step: every route of the admin API is documented with its method, and
// every documented operation is a route.
func TestAdminAPIDocumented(t *testing.T) {
	raw, err := os.ReadFile("adminapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	routes := apiRoutes(t)
	var documented []string
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var o struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || o.OperationID == "" || len(o.Responses) == 0 {
				t.Errorf("%s %s has no operationId or responses", method, path)
			}
			if _, ok := o.Responses["401"]; !ok {
				t.Errorf("%s %s does not document the 401 of a missing or bad token", method, path)
			}
		}
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is not in the OpenAPI document", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("the OpenAPI document describes %q, which routes.go does not serve", d)
		}
	}
	if _, ok := doc.Components.SecuritySchemes["bearer"]; !ok {
		t.Error("no bearer security scheme")
	}

	// Every reference points at something the document defines.
	var whole any
	if err := json.Unmarshal(raw, &whole); err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`"\$ref": "#/([^"]+)"`).FindAllStringSubmatch(string(raw), -1) {
		node := whole
		for _, key := range strings.Split(m[1], "/") {
			obj, _ := node.(map[string]any)
			node = obj[key]
		}
		if node == nil {
			t.Errorf("$ref #/%s points at nothing", m[1])
		}
	}
}

func TestAdminAPIDocumentServed(t *testing.T) {
	srv := servertest.Start(t, servertest.OpenSQLite(t))
	var doc map[string]any
	resp := getJSON(t, srv.URL+"/admin/api/openapi.json", &doc)
	if resp.StatusCode != http.StatusOK || doc["openapi"] != "3.1.0" {
		t.Fatalf("GET /admin/api/openapi.json: %d %v", resp.StatusCode, doc["openapi"])
	}
	servers, _ := doc["servers"].([]any)
	if len(servers) != 1 || servers[0].(map[string]any)["url"] != srv.URL {
		t.Errorf("servers %v, want this server's URL", servers)
	}
	flow := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)["operatorClient"].(map[string]any)["flows"].(map[string]any)["clientCredentials"].(map[string]any)
	if flow["tokenUrl"] != srv.URL+"/admin/token" {
		t.Errorf("operator token URL %v", flow["tokenUrl"])
	}
}
