/* Marks one symbol-version requirement of an ELF64 shared library as weak (VER_FLG_WEAK), so that the
 * dynamic loader only warns when the providing library lacks that version instead of refusing to load.
 * Usage: weaken_vernaux FILE VERSION_NAME
 * Exit: 0 patched or already weak, 3 the file has no such requirement, 1 error (message on stderr). */
#include <elf.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *buf;
static long size;

static int in_bounds(unsigned long off, unsigned long len) { return off <= (unsigned long)size && len <= (unsigned long)size - off; }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s FILE VERSION\n", argv[0]); return 1; }
    FILE *f = fopen(argv[1], "r+b");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END); size = ftell(f); fseek(f, 0, SEEK_SET);
    buf = malloc(size);
    if (!buf || fread(buf, 1, size, f) != (size_t)size) { fprintf(stderr, "%s: read failed\n", argv[1]); return 1; }
    if (size < (long)sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) || buf[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "%s: not an ELF64 file\n", argv[1]); return 1;
    }
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    if (!in_bounds(eh->e_shoff, (unsigned long)eh->e_shnum * sizeof(Elf64_Shdr))) { fprintf(stderr, "%s: bad section table\n", argv[1]); return 1; }
    Elf64_Shdr *sh = (Elf64_Shdr *)(buf + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_GNU_verneed) continue;
        if (sh[i].sh_link >= eh->e_shnum) break;
        Elf64_Shdr *strs = &sh[sh[i].sh_link];
        unsigned long off = sh[i].sh_offset;
        for (unsigned n = 0; n < sh[i].sh_info; n++) {
            if (!in_bounds(off, sizeof(Elf64_Verneed))) break;
            Elf64_Verneed *vn = (Elf64_Verneed *)(buf + off);
            unsigned long aoff = off + vn->vn_aux;
            for (unsigned a = 0; a < vn->vn_cnt; a++) {
                if (!in_bounds(aoff, sizeof(Elf64_Vernaux))) break;
                Elf64_Vernaux *va = (Elf64_Vernaux *)(buf + aoff);
                unsigned long noff = strs->sh_offset + va->vna_name;
                if (in_bounds(noff, strlen(argv[2]) + 1) && strcmp((char *)buf + noff, argv[2]) == 0) {
                    if (va->vna_flags & VER_FLG_WEAK) { printf("already weak\n"); return 0; }
                    va->vna_flags |= VER_FLG_WEAK;
                    fseek(f, (long)(aoff + offsetof(Elf64_Vernaux, vna_flags)), SEEK_SET);
                    if (fwrite(&va->vna_flags, sizeof va->vna_flags, 1, f) != 1 || fclose(f) != 0) {
                        fprintf(stderr, "%s: write failed\n", argv[1]); return 1;
                    }
                    printf("patched\n");
                    return 0;
                }
                if (!va->vna_next) break;
                aoff += va->vna_next;
            }
            if (!vn->vn_next) break;
            off += vn->vn_next;
        }
    }
    return 3;
}
