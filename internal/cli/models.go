package cli

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newModels() *cobra.Command {
	var base string
	cmd := &cobra.Command{
		Use:   "models",
		Short: "List, load and unload the models of a running Kiln",
	}
	addClientFlags(cmd.PersistentFlags(), &base)
	resolve := func() *client { return newClient(base) }
	var readyOnly bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every model and version with its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rows []struct {
				Name, Version, State, Reason string
			}
			body := []byte(fmt.Sprintf(`{"ready":%t}`, readyOnly))
			if _, _, err := resolve().do(cmd.Context(), "POST", "/v2/repository/index", nil, body, &rows); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tREASON")
			for _, r := range rows {
				v := r.Version
				if v == "" {
					v = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, v, r.State, r.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&readyOnly, "ready", false, "only READY versions")
	op := func(verb, short string) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " MODEL",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				path := "/v2/repository/models/" + url.PathEscape(args[0]) + "/" + verb
				if _, _, err := resolve().do(cmd.Context(), "POST", path, nil, []byte("{}"), nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sed %s\n", verb, args[0])
				return nil
			},
		}
	}
	cmd.AddCommand(list,
		op("load", "Load or reload a model from the repository (new versions swap in without downtime)"),
		op("unload", "Unload a model (waits for in-flight requests)"))
	return cmd
}
