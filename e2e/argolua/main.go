// argocd-lua runs Argo CD resource customizations (health checks, action discovery and actions)
// the way Argo CD runs them (util/lua/lua.go of argoproj/argo-cd, restated here, not copied):
//
//   - the VM is gopher-lua, the version Argo CD's go.mod pins (v1.1.2);
//   - it is made with SkipOpenLibs unless the health override sets useOpenLibs (actions never do),
//     then the package, base and table libraries are opened, and a cut-down os opener (time and
//     date only) that Argo CD registers under the table library's name: there is no global `os`,
//     `require("os")` (a preloaded module) is the way to reach os.time;
//   - the object arrives as the global table `obj`, converted from the object's JSON the way
//     Argo CD converts an unstructured object (JSON null dropped, both from maps and arrays;
//     integers and floats as numbers; empty maps and arrays as empty tables), and `actionParams`
//     as an empty table;
//   - the script is compiled once and the compiled function reused (Argo CD's compiled-script
//     cache), each run in a new state; a run is cut off after one second;
//   - the returned value is encoded with layeh.com/gopher-json, as Argo CD does; for an action an
//     empty table that stood for a map in the input becomes {} again (Argo CD's cleanReturnedObj).
//
// Input on stdin: {"mode": "health" | "health-openlibs" | "action", "script": "...", "objects": [...]}.
// Output: one JSON list, for each object {"result": <the returned value as JSON>} or {"error": "..."}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	luajson "layeh.com/gopher-json"
)

type request struct {
	Mode    string            `json:"mode"`
	Script  string            `json:"script"`
	Objects []json.RawMessage `json:"objects"`
}

type outcome struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua: bad input:", err)
		os.Exit(2)
	}
	openLibs := false
	switch req.Mode {
	case "health", "action":
	case "health-openlibs":
		openLibs = true
	default:
		fmt.Fprintln(os.Stderr, "argocd-lua: mode must be health, health-openlibs or action")
		os.Exit(2)
	}
	out := make([]outcome, 0, len(req.Objects))
	proto, compileErr := compile(req.Script)
	for _, raw := range req.Objects {
		obj, err := unstructured(raw)
		if err != nil {
			out = append(out, outcome{Error: "not a JSON object: " + err.Error()})
			continue
		}
		var result json.RawMessage
		err = compileErr
		if err == nil {
			result, err = run(obj, proto, openLibs)
		}
		if err == nil && req.Mode == "action" {
			result, err = cleanAction(result, obj)
		}
		if err != nil {
			out = append(out, outcome{Error: err.Error()})
		} else {
			out = append(out, outcome{Result: result})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
}

// unstructured decodes an object as Kubernetes' unstructured JSON does: integers as int64, other
// numbers as float64.
func unstructured(raw json.RawMessage) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		return nil, err
	}
	obj, ok := numbers(value).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("got %T", value)
	}
	return obj, nil
}

func numbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return value
}

// toLua converts a decoded JSON value as Argo CD does: nil is no value at all (a map key holding
// null is absent, an array item that is null is skipped), numbers are Lua numbers.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// safeOs is the os Argo CD lets scripts have: os.time and os.date.
var safeOs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	// Argo CD registers these under the table library's name (so table.time exists and no global
	// os does); require("os") is served by the preloaded module below.
	l.Push(l.RegisterModule(lua.TabLibName, safeOs))
	return 1
}

func loadSafeOs(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOs))
	return 1
}

func field(t *lua.LTable, key string, fallback int) int {
	if n, ok := t.RawGetString(key).(lua.LNumber); ok {
		return int(n)
	}
	return fallback
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	at := time.Date(field(t, "year", -1), time.Month(field(t, "month", -1)), field(t, "day", -1),
		field(t, "hour", 12), field(t, "min", 0), field(t, "sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate: "*t" / "!*t" tables, and a format whose %-flags Argo CD maps to Go layouts (an unknown
// flag is kept as written; %w is the weekday number).
func osDate(l *lua.LState) int {
	now := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			now = now.UTC()
			format = format[1:]
		}
		if l.GetTop() >= 2 {
			now = time.Unix(l.CheckInt64(2), 0)
		}
	}
	if strings.HasPrefix(format, "*t") {
		t := l.NewTable()
		for k, v := range map[string]int{"year": now.Year(), "month": int(now.Month()), "day": now.Day(),
			"hour": now.Hour(), "min": now.Minute(), "sec": now.Second(), "wday": int(now.Weekday()) + 1, "yday": 0} {
			t.RawSetString(k, lua.LNumber(v))
		}
		t.RawSetString("isdst", lua.LFalse)
		l.Push(t)
		return 1
	}
	layouts := map[byte]string{
		'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
		'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
		'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
	}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && i+1 < len(format) {
			if layout, ok := layouts[format[i+1]]; ok {
				b.WriteString(now.Format(layout))
				i++
				continue
			}
			if format[i+1] == 'w' {
				b.WriteString(fmt.Sprint(int(now.Weekday())))
				i++
				continue
			}
		}
		b.WriteByte(format[i])
	}
	l.Push(lua.LString(b.String()))
	return 1
}

// compile parses and compiles a script as LState.LoadString does (chunk name "<string>").
func compile(script string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(strings.NewReader(script), "<string>")
	if err != nil {
		return nil, &lua.ApiError{Type: lua.ApiErrorSyntax, Object: lua.LString(err.Error()), Cause: err}
	}
	return lua.Compile(chunk, "<string>")
}

// run executes the compiled script with obj as Argo CD does and returns the JSON of the value it returns.
func run(obj map[string]any, proto *lua.FunctionProto, openLibs bool) (json.RawMessage, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, loadSafeOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj))
	l.Push(l.NewFunctionFromProto(proto))
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		if apiErr, ok := err.(*lua.ApiError); ok && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return nil, err
	}
	value := l.Get(-1)
	if value.Type() == lua.LTNil {
		return json.RawMessage("null"), nil
	}
	if value.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", value.Type().String())
	}
	return luajson.Encode(value)
}

// cleanAction undoes what the encoding does to an empty map that an action returned unchanged:
// an empty Lua table encodes as [], so where the input held a map, [] becomes {} again.
func cleanAction(result json.RawMessage, obj map[string]any) (json.RawMessage, error) {
	var returned any
	if err := json.Unmarshal(result, &returned); err != nil {
		return nil, err
	}
	if m, ok := returned.(map[string]any); ok {
		original, _ := unstructured(mustJSON(obj))
		returned = cleanMap(m, original)
	}
	return json.Marshal(returned)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func cleanMap(returned, original map[string]any) map[string]any {
	for k, before := range original {
		after, ok := returned[k]
		if !ok {
			continue
		}
		switch a := after.(type) {
		case map[string]any:
			if b, ok := before.(map[string]any); ok {
				returned[k] = cleanMap(a, b)
			}
		case []any:
			switch b := before.(type) {
			case map[string]any:
				if len(a) == 0 {
					returned[k] = map[string]any{}
				}
			case []any:
				returned[k] = cleanList(a, b)
			}
		}
	}
	return returned
}

func cleanList(returned, original []any) []any {
	for i := range returned {
		if i >= len(original) {
			break
		}
		switch a := returned[i].(type) {
		case map[string]any:
			if b, ok := original[i].(map[string]any); ok {
				returned[i] = cleanMap(a, b)
			}
		case []any:
			if b, ok := original[i].([]any); ok {
				returned[i] = cleanList(a, b)
			}
		}
	}
	return returned
}
