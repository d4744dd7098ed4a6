package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/delen-edge/delen/agent/tenants"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
)

// newPasswdCmd is `delen passwd`: a bcrypt hash for the tenants file.
func newPasswdCmd(_ *globals) *cobra.Command {
	var cost int
	c := &cobra.Command{
		Use:   "passwd",
		Short: "read a password from standard input and print its bcrypt hash (for the tenants file of `delen serve --tenants`)",
		Long: "Reads one line from standard input (without its line break) and prints its bcrypt hash,\n" +
			"the password_hash of an entry of the tenants file. For example:\n\n" +
			"  printf '%s\\n' \"$CAM1_PASSWORD\" | delen passwd\n\n" +
			"At a terminal it prompts; the password is echoed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
				return fmt.Errorf("--cost %d: want %d to %d", cost, bcrypt.MinCost, bcrypt.MaxCost)
			}
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					fmt.Fprint(cmd.ErrOrStderr(), "password (echoed): ")
				}
			}
			line, err := bufio.NewReader(in).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			pw := strings.TrimRight(line, "\r\n")
			if pw == "" {
				return errors.New("no password on standard input")
			}
			h, err := tenants.Hash(pw, cost)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
	c.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, "bcrypt cost (each step doubles the work of checking a password)")
	return c
}
