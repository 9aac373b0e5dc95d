package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newInfer() *cobra.Command {
	var base, version, input, inputName, format string
	cmd := &cobra.Command{
		Use:   "infer MODEL",
		Short: "Send one inference request to a running Kiln and print the outputs",
		Long: `Send one inference request to a running Kiln and print the outputs.

The input is either an OIP v2 JSON request body ({"inputs":[...]}) or a NumPy
.npy array, which is sent as the model's input with the binary tensor extension
(--input-name picks the input when the model has several). Use - for stdin.`,
		Example: `  kiln infer iris --input models/iris/example.json
  kiln infer digits --input pixels.npy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if input == "" {
				return &exitError{2, fmt.Errorf("--input FILE is required (a JSON request or a .npy array; - for stdin)")}
			}
			var data []byte
			var err error
			if input == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(input)
			}
			if err != nil {
				return &exitError{2, err}
			}
			c := newClient(base)
			path := "/v2/models/" + url.PathEscape(args[0])
			if version != "" {
				path += "/versions/" + url.PathEscape(version)
			}
			var body []byte
			hdr := http.Header{}
			if bytes.HasPrefix(data, []byte("\x93NUMPY")) {
				t, err := parseNPY(data, 0)
				if err != nil {
					return &exitError{2, fmt.Errorf("%s: %w", input, err)}
				}
				name := inputName
				if name == "" {
					var md struct {
						Inputs []struct{ Name string } `json:"inputs"`
					}
					if _, _, err := c.do(cmd.Context(), "GET", path, nil, nil, &md); err != nil {
						return err
					}
					if len(md.Inputs) != 1 {
						return &exitError{2, fmt.Errorf("model has %d inputs: choose one with --input-name", len(md.Inputs))}
					}
					name = md.Inputs[0].Name
				}
				head, _ := json.Marshal(map[string]any{
					"inputs": []map[string]any{{
						"name": name, "datatype": t.DataType.String(), "shape": t.Shape,
						"parameters": map[string]any{"binary_data_size": len(t.Data)},
					}},
				})
				body = append(head, t.Data...)
				hdr.Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
				hdr.Set("Content-Type", "application/octet-stream")
			} else {
				if !json.Valid(data) {
					return &exitError{2, fmt.Errorf("%s is neither valid JSON nor a .npy file", input)}
				}
				body = data
			}
			_, resp, err := c.do(cmd.Context(), "POST", path+"/infer", hdr, body, nil)
			if err != nil {
				return err
			}
			return printInferResponse(cmd.OutOrStdout(), resp, format)
		},
	}
	f := cmd.Flags()
	addClientFlags(f, &base)
	f.StringVar(&version, "version", "", "model version (default: the server's choice, the highest ready)")
	f.StringVarP(&input, "input", "i", "", "request file: OIP JSON or .npy (- for stdin)")
	f.StringVar(&inputName, "input-name", "", "input tensor name for a .npy input")
	f.StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

func printInferResponse(w io.Writer, resp []byte, format string) error {
	switch format {
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, resp, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	case "text":
	default:
		return &exitError{2, fmt.Errorf("--output %q: want text or json", format)}
	}
	var r struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		ID           string `json:"id"`
		Outputs      []struct {
			Name     string          `json:"name"`
			DataType string          `json:"datatype"`
			Shape    []int64         `json:"shape"`
			Data     json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	fmt.Fprintf(w, "model %s version %s (request %s)\n", r.ModelName, r.ModelVersion, r.ID)
	for _, o := range r.Outputs {
		dims := make([]string, len(o.Shape))
		for i, d := range o.Shape {
			dims[i] = strconv.FormatInt(d, 10)
		}
		fmt.Fprintf(w, "%s %s[%s] = %s\n", o.Name, o.DataType, strings.Join(dims, ","), o.Data)
	}
	return nil
}
