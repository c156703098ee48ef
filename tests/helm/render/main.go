// render: a small stand-in for `helm template`, for machines without helm.
//
// It renders a chart the way Helm 3 does, with the same pieces: Go's
// text/template, the sprig functions (minus env/expandenv, as in Helm), and
// Helm's own additions the agentq chart uses: include, tpl, required,
// toYaml, fromYaml, toJson, fromJson, lookup (always empty, as in
// `helm template`), .Values, .Release, .Chart, .Capabilities,
// .Template, .Files.Get. Values are read like Helm reads them (YAML through
// JSON, so numbers are float64), merged like Helm merges them (maps deep,
// null deletes a key), and checked against values.schema.json with
// gojsonschema (the validator Helm 3 uses) before anything is rendered.
//
//	render -chart DIR [-f VALUES.yaml]... [-name RELEASE] [-namespace NS] [-notes]
//
// Prints the manifests ("---\n# Source: <chart>/templates/<file>" before
// each file, as helm template does), or NOTES.txt with -notes. Exit 1 with
// the error on stderr when the values fail the schema or a template fails.
// Build: GO111MODULE=off GOPATH=/usr/share/gocode go build (Debian packages).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v2"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// Files is .Files: the chart's files outside templates/.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }

// APIVersions is .Capabilities.APIVersions; `helm template` without a
// cluster knows only the built-in API groups.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// jsonish turns a YAML-decoded value into what Helm sees after its
// YAML -> JSON -> Go round trip: string keys and float64 numbers.
func jsonish(v interface{}) (interface{}, error) {
	v = stringKeys(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out interface{}
	err = json.Unmarshal(b, &out)
	return out, err
}

func stringKeys(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = stringKeys(x)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = stringKeys(t[i])
		}
	}
	return v
}

func fromYAML(s string) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, err
	}
	v, err := jsonish(raw)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]interface{})
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// toYAML is sigs.k8s.io/yaml.Marshal: JSON first (sorted keys), then YAML.
func toYAML(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var ms yaml.MapSlice
	var out []byte
	if err := yaml.Unmarshal(b, &ms); err == nil && len(b) > 0 && b[0] == '{' {
		out, err = yaml.Marshal(ms)
		if err != nil {
			return ""
		}
	} else {
		var any interface{}
		if err := yaml.Unmarshal(b, &any); err != nil {
			return ""
		}
		if out, err = yaml.Marshal(any); err != nil {
			return ""
		}
	}
	return strings.TrimSuffix(string(out), "\n")
}

// coalesce merges user values over defaults the way Helm does: maps
// recursively, anything else replaced, null deletes the key.
func coalesce(dst, src map[string]interface{}) {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		dm, dok := dst[k].(map[string]interface{})
		sm, sok := sv.(map[string]interface{})
		if dok && sok {
			coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
}

func readYAMLFile(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := fromYAML(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

func validate(chartDir string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewGoLoader(values))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var msg []string
	for _, e := range res.Errors() {
		msg = append(msg, "- "+e.String())
	}
	return fmt.Errorf("values don't meet the specifications of the schema(s):\n%s", strings.Join(msg, "\n"))
}

func funcMap(t **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = func(s string) map[string]interface{} {
		m, err := fromYAML(s)
		if err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return m
	}
	f["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := (*t).ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := (*t).Clone()
		if err != nil {
			return "", err
		}
		c, err = c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = c.Execute(&buf, data)
		return buf.String(), err
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

func run() error {
	var valueFiles fileList
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("name", "agentq", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	notes := flag.Bool("notes", false, "print NOTES.txt instead of the manifests")
	flag.Var(&valueFiles, "f", "values file (repeatable; later files win)")
	flag.Parse()
	if *chartDir == "" {
		return errors.New("usage: render -chart DIR [-f values.yaml]... [-name R] [-namespace NS] [-notes]")
	}

	chart, err := readYAMLFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAMLFile(filepath.Join(*chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, vf := range valueFiles {
		user, err := readYAMLFile(vf)
		if err != nil {
			return err
		}
		coalesce(values, user)
	}
	if err := validate(*chartDir, values); err != nil {
		return err
	}

	name := fmt.Sprint(chart["name"])
	files := Files{}
	var templates []string
	err = filepath.Walk(*chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
			return nil
		}
		b, err := os.ReadFile(p)
		files[rel] = b
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(templates)

	var t *template.Template
	t = template.New(name).Funcs(funcMap(&t)).Option("missingkey=zero")
	for _, rel := range templates {
		b, err := os.ReadFile(filepath.Join(*chartDir, rel))
		if err != nil {
			return err
		}
		if _, err := t.New(name + "/" + rel).Parse(string(b)); err != nil {
			return err
		}
	}

	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *release, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"],
			"Description": chart["description"], "Type": chart["type"],
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v1.29.0", "Major": "1", "Minor": "29", "GitVersion": "v1.29.0",
			},
			"APIVersions": APIVersions{"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2"},
		},
		"Files": files,
	}

	var out bytes.Buffer
	for _, rel := range templates {
		base := filepath.Base(rel)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != *notes {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": name + "/" + rel, "BasePath": name + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name+"/"+rel, top); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		if !isNotes {
			fmt.Fprintf(&out, "---\n# Source: %s/%s\n", name, rel)
		}
		out.WriteString(strings.TrimLeft(text, "\n"))
		out.WriteString("\n")
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}
