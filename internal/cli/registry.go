package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Views of the native registry API's answers (only what the CLI prints).
type (
	regModel struct {
		Name          string            `json:"name"`
		Description   string            `json:"description"`
		Tags          map[string]string `json:"tags"`
		Aliases       map[string]int64  `json:"aliases"`
		LatestVersion int64             `json:"latest_version"`
		CreatedAt     time.Time         `json:"created_at"`
		UpdatedAt     time.Time         `json:"updated_at"`
	}
	regMetric struct {
		Value     float64 `json:"value"`
		Direction string  `json:"direction"`
	}
	regVersionView struct {
		Model       string `json:"model"`
		Version     int64  `json:"version"`
		Stage       string `json:"stage"`
		Description string `json:"description"`
		Artifact    struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
			Format string `json:"format"`
			Kind   string `json:"kind"`
		} `json:"artifact"`
		Source    string               `json:"source"`
		Metrics   map[string]regMetric `json:"metrics"`
		Params    map[string]string    `json:"params"`
		Tags      map[string]string    `json:"tags"`
		Aliases   []string             `json:"aliases"`
		CreatedBy string               `json:"created_by"`
		CreatedAt time.Time            `json:"created_at"`
	}
	regComparison struct {
		Model   string `json:"model"`
		A       int64  `json:"a"`
		B       int64  `json:"b"`
		Metrics []struct {
			Name      string   `json:"name"`
			A         *float64 `json:"a"`
			B         *float64 `json:"b"`
			Delta     *float64 `json:"delta"`
			Direction string   `json:"direction"`
			Verdict   string   `json:"verdict"`
		} `json:"metrics"`
		Params []struct {
			Name string  `json:"name"`
			A    *string `json:"a"`
			B    *string `json:"b"`
		} `json:"params"`
		SignatureChanged bool `json:"signature_changed"`
	}
	regTransition struct {
		Version int64     `json:"version"`
		From    string    `json:"from"`
		To      string    `json:"to"`
		Actor   string    `json:"actor"`
		Reason  string    `json:"reason"`
		At      time.Time `json:"at"`
	}
)

func newRegistry() *cobra.Command {
	var base, actor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Register, promote, alias, compare and inspect model versions in a running Kiln's registry",
	}
	addClientFlags(cmd.PersistentFlags(), &base)
	cmd.PersistentFlags().StringVar(&actor, "actor", os.Getenv("USER"), "who makes the change (recorded in the history; sent as X-Kiln-Actor)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the server's JSON answer")
	c := func() *client { return newClient(base) }
	hdr := func() http.Header {
		h := http.Header{}
		if actor != "" {
			h.Set("X-Kiln-Actor", actor)
		}
		return h
	}
	printJSON := func(cmd *cobra.Command, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
		return err
	}
	modelPath := func(m string) string { return "/api/v1/models/" + url.PathEscape(m) }
	versionPath := func(m, v string) (string, error) {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return "", &exitError{2, fmt.Errorf("version %q is not a number", v)}
		}
		return modelPath(m) + "/versions/" + v, nil
	}

	// register
	var (
		metrics, params, tags      []string
		description, format, idem  string
		source, runID, pipelineRun string
		datasetDigests             []string
	)
	register := &cobra.Command{
		Use:   "register MODEL PATH",
		Short: "Upload a model file or directory and register it as a new version",
		Example: "  kiln registry register churn model.onnx --metric accuracy=0.93:higher --metric latency_ms=4.1:lower --param epochs=20\n" +
			"  kiln registry register bert ./bert-dir --format onnx --tag team=search",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseMetrics(metrics)
			if err != nil {
				return &exitError{2, err}
			}
			p, err := parsePairs("param", params)
			if err != nil {
				return &exitError{2, err}
			}
			tg, err := parsePairs("tag", tags)
			if err != nil {
				return &exitError{2, err}
			}
			if _, err := os.Stat(args[1]); err != nil {
				return &exitError{2, err}
			}
			ctx := cmd.Context()
			cl := c()
			createBody, _ := json.Marshal(map[string]string{"name": args[0]})
			err = cl.registryCall(ctx, http.MethodPost, "/api/v1/models", hdr(), bytes.NewReader(createBody), nil)
			if err != nil && !strings.Contains(err.Error(), "ALREADY_EXISTS") {
				return err
			}
			digest, size, err := cl.uploadArtifact(ctx, args[1])
			if err != nil {
				return err
			}
			if format == "" {
				format = guessFormat(args[1])
			}
			req := map[string]any{
				"artifact": map[string]any{"digest": digest, "format": format},
				"metrics":  m, "params": p, "tags": tg, "description": description,
				"source": source, "run_id": runID,
			}
			if pipelineRun != "" || len(datasetDigests) > 0 {
				req["lineage"] = map[string]any{"pipeline_run_id": pipelineRun, "dataset_digests": datasetDigests}
			}
			body, _ := json.Marshal(req)
			h := hdr()
			if idem != "" {
				h.Set("Idempotency-Key", idem)
			}
			var v regVersionView
			if err := cl.registryCall(ctx, http.MethodPost, modelPath(args[0])+"/versions", h, bytes.NewReader(body), &v); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s version %d (%s, %d bytes)\n", v.Model, v.Version, v.Artifact.Digest, size)
			return nil
		},
	}
	rf := register.Flags()
	rf.StringArrayVar(&metrics, "metric", nil, "metric name=value:higher|lower (repeatable)")
	rf.StringArrayVar(&params, "param", nil, "parameter key=value (repeatable)")
	rf.StringArrayVar(&tags, "tag", nil, "tag key=value (repeatable)")
	rf.StringVar(&description, "description", "", "version description")
	rf.StringVar(&format, "format", "", "artifact format (onnx, torchscript, xgboost, lightgbm, python, ...; default: from the file name)")
	rf.StringVar(&idem, "idempotency-key", "", "a retried register with the same key returns the first version instead of making a second")
	rf.StringVar(&source, "source", "", "where the model came from (a URI, recorded as is)")
	rf.StringVar(&runID, "run-id", "", "training run id (recorded as is)")
	rf.StringVar(&pipelineRun, "pipeline-run", "", "lineage: the pipeline run that produced the model")
	rf.StringArrayVar(&datasetDigests, "dataset-digest", nil, "lineage: digest of a training dataset (repeatable)")

	// list
	var filter string
	var limit int
	list := &cobra.Command{
		Use:   "list [MODEL]",
		Short: "List registered models, or the versions of one model",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if filter != "" {
				q.Set("filter", filter)
			}
			q.Set("max_results", strconv.Itoa(limit))
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if len(args) == 0 {
				var page struct {
					Models []regModel `json:"models"`
				}
				if err := c().registryCall(cmd.Context(), http.MethodGet, "/api/v1/models?"+q.Encode(), hdr(), nil, &page); err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, page)
				}
				fmt.Fprintln(tw, "NAME\tLATEST\tALIASES\tUPDATED\tDESCRIPTION")
				for _, m := range page.Models {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m.Name, m.LatestVersion, aliasList(m.Aliases), m.UpdatedAt.Format(time.RFC3339), m.Description)
				}
				return tw.Flush()
			}
			var page struct {
				Versions []regVersionView `json:"versions"`
			}
			if err := c().registryCall(cmd.Context(), http.MethodGet, modelPath(args[0])+"/versions?"+q.Encode(), hdr(), nil, &page); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, page)
			}
			fmt.Fprintln(tw, "VERSION\tSTAGE\tALIASES\tDIGEST\tSIZE\tMETRICS\tCREATED")
			for _, v := range page.Versions {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Version, v.Stage, strings.Join(v.Aliases, ","), shortDigest(v.Artifact.Digest), v.Artifact.Size, metricList(v.Metrics), v.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&filter, "filter", "", `search filter, e.g. "name LIKE 'churn%'" or "tags.team = 'search'"`)
	list.Flags().IntVar(&limit, "limit", 100, "at most this many rows")

	show := &cobra.Command{
		Use:   "show MODEL [VERSION]",
		Short: "Show a registered model, or one of its versions",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				var m regModel
				if err := c().registryCall(cmd.Context(), http.MethodGet, modelPath(args[0]), hdr(), nil, &m); err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, m)
				}
				fmt.Fprintf(out, "name:           %s\ndescription:    %s\nlatest version: %d\naliases:        %s\ntags:           %s\ncreated:        %s\nupdated:        %s\n",
					m.Name, m.Description, m.LatestVersion, aliasList(m.Aliases), pairList(m.Tags), m.CreatedAt.Format(time.RFC3339), m.UpdatedAt.Format(time.RFC3339))
				return nil
			}
			p, err := versionPath(args[0], args[1])
			if err != nil {
				return err
			}
			var v regVersionView
			if err := c().registryCall(cmd.Context(), http.MethodGet, p, hdr(), nil, &v); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, v)
			}
			fmt.Fprintf(out, "model:       %s\nversion:     %d\nstage:       %s\naliases:     %s\nartifact:    %s (%d bytes, %s)\nmetrics:     %s\nparams:      %s\ntags:        %s\ndescription: %s\ncreated:     %s by %s\n",
				v.Model, v.Version, v.Stage, strings.Join(v.Aliases, ","), v.Artifact.Digest, v.Artifact.Size, v.Artifact.Format,
				metricList(v.Metrics), pairList(v.Params), pairList(v.Tags), v.Description, v.CreatedAt.Format(time.RFC3339), v.CreatedBy)
			return nil
		},
	}

	// promote
	var to, reason string
	var archive bool
	var gates []string
	promote := &cobra.Command{
		Use:     "promote MODEL VERSION --to STAGE",
		Short:   "Move a version to a stage (development, staging, production, archived), checking promotion gates",
		Example: "  kiln registry promote churn 3 --to production --archive-existing --gate 'accuracy >= production.accuracy - 0.01' --reason 'better recall'",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return &exitError{2, errors.New("--to is required")}
			}
			p, err := versionPath(args[0], args[1])
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]any{"stage": to, "archive_existing": archive, "gates": gates, "reason": reason})
			var v regVersionView
			if err := c().registryCall(cmd.Context(), http.MethodPost, p+"/transition", hdr(), bytes.NewReader(body), &v); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s version %d is now in %s\n", v.Model, v.Version, v.Stage)
			return nil
		},
	}
	promote.Flags().StringVar(&to, "to", "", "target stage: development, staging, production or archived")
	promote.Flags().BoolVar(&archive, "archive-existing", false, "archive the versions currently in the target stage")
	promote.Flags().StringArrayVar(&gates, "gate", nil, "promotion gate rule (repeatable), e.g. 'accuracy >= production.accuracy'")
	promote.Flags().StringVar(&reason, "reason", "", "why (recorded in the history)")

	// alias
	alias := &cobra.Command{Use: "alias", Short: "Set, show or delete an alias (a named pointer to a version)"}
	var expected int64
	aliasSet := &cobra.Command{
		Use:   "set MODEL ALIAS VERSION",
		Short: "Point ALIAS at VERSION (moving it if it exists)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil {
				return &exitError{2, fmt.Errorf("version %q is not a number", args[2])}
			}
			req := map[string]any{"version": n}
			if cmd.Flags().Changed("expected-version") {
				req["expected_version"] = expected
			}
			body, _ := json.Marshal(req)
			if err := c().registryCall(cmd.Context(), http.MethodPut, modelPath(args[0])+"/aliases/"+url.PathEscape(args[1]), hdr(), bytes.NewReader(body), nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s -> version %d\n", args[0], args[1], n)
			return nil
		},
	}
	aliasSet.Flags().Int64Var(&expected, "expected-version", 0, "only move the alias if it currently points at this version (0: only if it does not exist)")
	aliasGet := &cobra.Command{
		Use:   "get MODEL ALIAS",
		Short: "Show the version an alias points at",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v regVersionView
			if err := c().registryCall(cmd.Context(), http.MethodGet, modelPath(args[0])+"/aliases/"+url.PathEscape(args[1]), hdr(), nil, &v); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s -> version %d (%s)\n", args[0], args[1], v.Version, v.Artifact.Digest)
			return nil
		},
	}
	aliasDelete := &cobra.Command{
		Use:   "delete MODEL ALIAS",
		Short: "Delete an alias",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c().registryCall(cmd.Context(), http.MethodDelete, modelPath(args[0])+"/aliases/"+url.PathEscape(args[1]), hdr(), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted alias %s@%s\n", args[0], args[1])
			return nil
		},
	}
	var aliasAt string
	aliasHistory := &cobra.Command{
		Use:   "history MODEL ALIAS",
		Short: "Show every move of an alias, or where it pointed at a time (--at)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if aliasAt != "" {
				if _, err := time.Parse(time.RFC3339Nano, aliasAt); err != nil {
					return &exitError{2, fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", aliasAt)}
				}
				q.Set("at", aliasAt)
			}
			var h struct {
				Events []struct {
					From   int64     `json:"from"`
					To     int64     `json:"to"`
					Actor  string    `json:"actor"`
					Reason string    `json:"reason"`
					At     time.Time `json:"at"`
				} `json:"events"`
				Version *int64 `json:"version"`
			}
			p := modelPath(args[0]) + "/aliases/" + url.PathEscape(args[1]) + "/history?" + q.Encode()
			if err := c().registryCall(cmd.Context(), http.MethodGet, p, hdr(), nil, &h); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, h)
			}
			out := cmd.OutOrStdout()
			if aliasAt != "" {
				if h.Version == nil {
					fmt.Fprintf(out, "%s@%s did not exist at %s\n", args[0], args[1], aliasAt)
				} else {
					fmt.Fprintf(out, "%s@%s pointed at version %d at %s\n", args[0], args[1], *h.Version, aliasAt)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tFROM\tTO\tACTOR\tREASON")
			for _, e := range h.Events {
				from, to := "-", "-"
				if e.From != 0 {
					from = strconv.FormatInt(e.From, 10)
				}
				if e.To != 0 {
					to = strconv.FormatInt(e.To, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), from, to, e.Actor, e.Reason)
			}
			return tw.Flush()
		},
	}
	aliasHistory.Flags().StringVar(&aliasAt, "at", "", "RFC 3339 time: print where the alias pointed then")
	alias.AddCommand(aliasSet, aliasGet, aliasDelete, aliasHistory)

	compare := &cobra.Command{
		Use:   "compare MODEL VERSION_A VERSION_B",
		Short: "Compare two versions: metric deltas judged by each metric's direction, parameter and signature changes",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, v := range args[1:] {
				if _, err := strconv.ParseInt(v, 10, 64); err != nil {
					return &exitError{2, fmt.Errorf("version %q is not a number", v)}
				}
			}
			var cmp regComparison
			if err := c().registryCall(cmd.Context(), http.MethodGet, modelPath(args[0])+"/compare?a="+args[1]+"&b="+args[2], hdr(), nil, &cmp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, cmp)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "METRIC\tv%d\tv%d\tDELTA\tBETTER IS\tVERDICT\n", cmp.A, cmp.B)
			for _, m := range cmp.Metrics {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, fnum(m.A), fnum(m.B), fnum(m.Delta), m.Direction, m.Verdict)
			}
			if len(cmp.Params) > 0 {
				fmt.Fprintf(tw, "\nPARAM\tv%d\tv%d\n", cmp.A, cmp.B)
				for _, p := range cmp.Params {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, fstr(p.A), fstr(p.B))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if cmp.SignatureChanged {
				fmt.Fprintln(cmd.OutOrStdout(), "\nsignature changed (inputs or outputs differ)")
			}
			return nil
		},
	}

	var at, stage string
	history := &cobra.Command{
		Use:   "history MODEL",
		Short: "Show the stage transitions of a model, or which version held a stage at a time (--at)",
		Example: "  kiln registry history churn\n" +
			"  kiln registry history churn --stage production --at 2026-01-02T15:04:05Z",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if at != "" {
				if _, err := time.Parse(time.RFC3339, at); err != nil {
					return &exitError{2, fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", at)}
				}
				q.Set("at", at)
				if stage == "" {
					stage = "production"
				}
			}
			if stage != "" {
				q.Set("stage", stage)
			}
			var h struct {
				Transitions []regTransition `json:"transitions"`
				Stage       string          `json:"stage"`
				At          *time.Time      `json:"at"`
				Version     *int64          `json:"version"`
			}
			if err := c().registryCall(cmd.Context(), http.MethodGet, modelPath(args[0])+"/history?"+q.Encode(), hdr(), nil, &h); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, h)
			}
			out := cmd.OutOrStdout()
			if at != "" {
				if h.Version == nil {
					fmt.Fprintf(out, "no version of %s was in %s at %s\n", args[0], h.Stage, at)
				} else {
					fmt.Fprintf(out, "%s version %d was in %s at %s\n", args[0], *h.Version, h.Stage, at)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tVERSION\tFROM\tTO\tACTOR\tREASON")
			for _, t := range h.Transitions {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", t.At.Format(time.RFC3339), t.Version, t.From, t.To, t.Actor, t.Reason)
			}
			return tw.Flush()
		},
	}
	history.Flags().StringVar(&at, "at", "", "RFC 3339 time: print which version held --stage (default production) then")
	history.Flags().StringVar(&stage, "stage", "", "only transitions into or out of this stage")

	del := &cobra.Command{
		Use:   "delete MODEL [VERSION]",
		Short: "Delete a version (refused while it is aliased or served), or a whole model",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := modelPath(args[0])
			what := "model " + args[0]
			if len(args) == 2 {
				var err error
				if p, err = versionPath(args[0], args[1]); err != nil {
					return err
				}
				what = args[0] + " version " + args[1]
			}
			if err := c().registryCall(cmd.Context(), http.MethodDelete, p, hdr(), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", what)
			return nil
		},
	}

	var output string
	download := &cobra.Command{
		Use:   "download MODEL VERSION",
		Short: "Download a version's artifact (a directory artifact comes as a tar archive)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := versionPath(args[0], args[1])
			if err != nil {
				return err
			}
			if output == "" {
				return &exitError{2, errors.New("-o/--output is required (- for stdout)")}
			}
			var v regVersionView
			if err := c().registryCall(cmd.Context(), http.MethodGet, p, hdr(), nil, &v); err != nil {
				return err
			}
			if v.Artifact.Kind == "directory" {
				p += "/artifact?format=tar"
			} else {
				p += "/artifact"
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, c().base+p, nil)
			if err != nil {
				return err
			}
			resp, err := c().hc.Do(req)
			if err != nil {
				return fmt.Errorf("cannot reach Kiln: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var e apiError
				data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
				if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
					return fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
				}
				return fmt.Errorf("download: HTTP %d", resp.StatusCode)
			}
			if output == "-" {
				_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
				return err
			}
			tmp := output + ".part"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			n, err := io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("download: %w", err)
			}
			if err := os.Rename(tmp, output); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d bytes, %s)\n", output, n, resp.Header.Get("X-Kiln-Digest"))
			return nil
		},
	}
	download.Flags().StringVarP(&output, "output", "o", "", "file to write (- for stdout)")

	datasets := newRegistryDatasets(registryCmd{client: c, header: hdr, asJSON: &asJSON, versionPath: versionPath, printJSON: printJSON})

	cmd.AddCommand(register, list, show, promote, alias, compare, history, del, download, datasets)
	return cmd
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func aliasList(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func pairList(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func metricList(m map[string]regMetric) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(m[k].Value, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func fnum(f *float64) string {
	if f == nil {
		return "-"
	}
	return strconv.FormatFloat(*f, 'g', 6, 64)
}

func fstr(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// guessFormat names a model file's format from its extension ("" if
// unknown or a directory).
func guessFormat(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".onnx":
		return "onnx"
	case ".pt", ".torchscript":
		return "torchscript"
	case ".ubj":
		return "xgboost"
	case ".py":
		return "python"
	}
	return ""
}
