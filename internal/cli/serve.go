package cli

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kilnai/kiln/internal/app"
	"github.com/kilnai/kiln/internal/config"
)

func newServe() *cobra.Command {
	var cfgFile string
	flagCfg := config.DefaultServer()
	var flagField map[string]int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the models of a model repository",
		Long: `Serve the models of a model repository over OIP v2 HTTP (default 127.0.0.1:8000).

Settings come from defaults, then --config FILE (YAML), then KILN_* environment
variables, then flags; later sources win.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.DefaultServer()
			if cfgFile != "" {
				if err := config.LoadServerFile(cfgFile, &cfg); err != nil {
					return &exitError{2, err}
				}
			}
			if err := config.ApplyEnv(&cfg, os.LookupEnv); err != nil {
				return &exitError{2, err}
			}
			// Flags the user set win over file and environment.
			src, dst := reflect.ValueOf(&flagCfg).Elem(), reflect.ValueOf(&cfg).Elem()
			cmd.Flags().Visit(func(f *pflag.Flag) {
				if i, ok := flagField[f.Name]; ok {
					dst.Field(i).Set(src.Field(i))
				}
			})
			if err := cfg.Validate(); err != nil {
				return &exitError{2, err}
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
			a, err := app.New(cfg, log)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML file with server settings (keys as the flags, with _ for -)")
	flagField = bindServerFlags(f, &flagCfg)
	return cmd
}

// bindServerFlags defines one flag per config.Server field, named after
// its YAML key, with the field's usage text and environment variable. It
// returns the field index each flag sets.
func bindServerFlags(f *pflag.FlagSet, cfg *config.Server) map[string]int {
	flagField := map[string]int{}
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		name := strings.ReplaceAll(sf.Tag.Get("yaml"), "_", "-")
		usage := fmt.Sprintf("%s (env %s)", sf.Tag.Get("usage"), sf.Tag.Get("env"))
		flagField[name] = i
		switch p := v.Field(i).Addr().Interface().(type) {
		case *string:
			f.StringVar(p, name, *p, usage)
		case *bool:
			f.BoolVar(p, name, *p, usage)
		case *int64:
			f.Int64Var(p, name, *p, usage)
		case *config.ByteSize:
			f.Var((*byteSizeFlag)(p), name, usage)
		case *config.Duration:
			f.Var((*durationFlag)(p), name, usage)
		default:
			panic("cli: no flag kind for field " + sf.Name)
		}
	}
	return flagField
}

type byteSizeFlag config.ByteSize

func (b *byteSizeFlag) String() string { return config.ByteSize(*b).String() }
func (b *byteSizeFlag) Set(s string) error {
	return (*config.ByteSize)(b).UnmarshalText([]byte(s))
}
func (b *byteSizeFlag) Type() string { return "size" }

type durationFlag config.Duration

func (d *durationFlag) String() string { return config.Duration(*d).String() }
func (d *durationFlag) Set(s string) error {
	return (*config.Duration)(d).UnmarshalText([]byte(s))
}
func (d *durationFlag) Type() string { return "duration" }
