package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnai/kiln/internal/registry/dataset"
)

// registryCmd is what the registry subcommands defined outside
// newRegistry share with it: the client, the actor header, --json and
// the path helpers.
type registryCmd struct {
	client      func() *client
	header      func() http.Header
	asJSON      *bool
	versionPath func(model, version string) (string, error)
	printJSON   func(cmd *cobra.Command, v any) error
}

// datasetPage is the answer of GET .../versions/{version}/datasets.
type datasetPage struct {
	Datasets []dataset.Record `json:"datasets"`
}

func newRegistryDatasets(rc registryCmd) *cobra.Command {
	var role string
	var profile bool
	cmd := &cobra.Command{
		Use:   "datasets MODEL VERSION",
		Short: "List the datasets pipelines recorded for a version (registry sink): role, rows, digest, run, and with --profile each column's statistics",
		Example: "  kiln registry datasets churn 3\n" +
			"  kiln registry datasets churn 3 --role training --profile\n" +
			"  kiln registry datasets churn 3 --json",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := rc.versionPath(args[0], args[1])
			if err != nil {
				return err
			}
			q := url.Values{}
			if role != "" {
				if !dataset.ValidRole(role) {
					return &exitError{2, fmt.Errorf("--role %q: want %s", role, strings.Join(dataset.Roles, ", "))}
				}
				q.Set("role", role)
			}
			if !profile && !*rc.asJSON {
				q.Set("profile", "false")
			}
			if len(q) > 0 {
				p += "/datasets?" + q.Encode()
			} else {
				p += "/datasets"
			}
			var page datasetPage
			if err := rc.client().registryCall(cmd.Context(), http.MethodGet, p, rc.header(), nil, &page); err != nil {
				return err
			}
			if *rc.asJSON {
				return rc.printJSON(cmd, page)
			}
			out := cmd.OutOrStdout()
			if len(page.Datasets) == 0 {
				what := "datasets"
				if role != "" {
					what = role + " datasets"
				}
				_, err := fmt.Fprintf(out, "no %s recorded for %s version %s\n", what, args[0], args[1])
				return err
			}
			if profile {
				return writeDatasetProfiles(out, page.Datasets)
			}
			return writeDatasetTable(out, page.Datasets)
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "only this role: "+strings.Join(dataset.Roles, ", "))
	cmd.Flags().BoolVar(&profile, "profile", false, "print each dataset's per-column profile (count, nulls, mean, std, min, median, max, distinct values, top values)")
	return cmd
}

// writeDatasetTable prints one line per record; a TASK column appears
// when a record covers a distributed task.
func writeDatasetTable(w io.Writer, recs []dataset.Record) error {
	tasks := false
	for _, d := range recs {
		tasks = tasks || d.Task != ""
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if tasks {
		fmt.Fprintln(tw, "DATASET\tROLE\tROWS\tDIGEST\tRUN\tTASK\tCREATED")
	} else {
		fmt.Fprintln(tw, "DATASET\tROLE\tROWS\tDIGEST\tRUN\tCREATED")
	}
	for _, d := range recs {
		run := d.RunID
		if tasks {
			run += "\t" + orDash(d.Task)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", d.Name, d.Role, d.Rows, shortDigest(d.Digest), run, d.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

// writeDatasetProfiles prints, for each record, a heading and a table of
// its columns' statistics.
func writeDatasetProfiles(w io.Writer, recs []dataset.Record) error {
	for i, d := range recs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		task := ""
		if d.Task != "" {
			task = ", task " + d.Task
		}
		fmt.Fprintf(w, "%s (%s): %d rows, %s (%s), run %s%s, %s\n",
			d.Name, d.Role, d.Rows, d.Digest, d.DigestKind, d.RunID, task, d.Created.Format(time.RFC3339))
		if d.Profile == nil {
			fmt.Fprintln(w, "  no profile (the sink ran with profile: false)")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COLUMN\tTYPE\tCOUNT\tNULLS\tMEAN\tSTD\tMIN\tP50\tMAX\tDISTINCT\tTOP")
		for _, c := range d.Profile.Columns {
			lo, med, hi := fnum(c.Min), "-", fnum(c.Max)
			if v, ok := c.Quantiles["p50"]; ok {
				med = fnum(&v)
			}
			if c.Kind == "temporal" {
				lo, hi = orDash(c.First), orDash(c.Last)
			}
			distinct := "-"
			if c.Kind == "categorical" && c.Count > 0 {
				distinct = strconv.FormatInt(c.Distinct, 10)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				c.Name, c.Type, c.Count, c.Nulls, fnum(c.Mean), fnum(c.Std), lo, med, hi, distinct, topList(c))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// topList shows a categorical column's three most frequent values.
func topList(c *dataset.Column) string {
	if len(c.Top) == 0 {
		return "-"
	}
	parts := make([]string, 0, 4)
	for i, t := range c.Top {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, t.Value+"="+strconv.FormatInt(t.Count, 10))
	}
	s := strings.Join(parts, ", ")
	if c.TopIsApprox {
		s += " (approx.)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
