; Inno Setup 6 script for Hailstone (Windows x64).
;
; Build the one-folder app first, then compile this script:
;   pyinstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\hailstone.spec
;   iscc /DAppVersion=<version from pyproject.toml> packaging\windows\hailstone.iss
; Output: dist\hailstone-<version>-windows-x86_64-setup.exe
;
; No version is written here: /DAppVersion (the release workflow passes the
; pyproject.toml version), or else the ProductVersion resource of
; dist\hailstone\hailstone.exe, which the spec also takes from pyproject.toml.
; Installs per user by default (no admin prompt); an administrator can choose
; "all users" in the first dialog.

#define AppName "Hailstone"
#define AppExeName "hailstone.exe"
#define AppCliName "hailstone-cli.exe"
#define BuildDir AddBackslash(SourcePath) + "..\..\dist\hailstone"
#define IconFile AddBackslash(SourcePath) + "..\..\build\icons\hailstone.ico"

#ifndef AppVersion
  #define AppVersion GetStringFileInfo(BuildDir + "\" + AppExeName, "ProductVersion")
#endif
#if AppVersion == ""
  #error AppVersion unknown: build dist\hailstone first or pass /DAppVersion=X.Y.Z
#endif
#if !FileExists(BuildDir + "\" + AppCliName)
  #error dist\hailstone\hailstone-cli.exe is missing: build with packaging\hailstone.spec first
#endif

[Setup]
; A fixed id: upgrades replace the previous installation. Never change it.
AppId={{AF256672-4BA2-4DAB-B8D3-59D1F87359B4}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Hailstone
AppComments=Volunteer client that verifies the Collatz conjecture beyond 2^71
VersionInfoVersion={#AppVersion}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir=..\..\dist
OutputBaseFilename=hailstone-{#AppVersion}-windows-x86_64-setup
#if FileExists(IconFile)
SetupIconFile={#IconFile}
#endif
UninstallDisplayIcon={app}\{#AppExeName}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; The app holds files open while it runs: ask it to close (Restart Manager).
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BuildDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Comment: "Verify the Collatz conjecture"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: desktopicon

[Registry]
; "Start at login" (app\autostart.py) writes this value; remove it with the app.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: none; ValueName: "Hailstone"; Flags: uninsdeletevalue dontcreatekey

[Run]
Filename: "{app}\{#AppExeName}"; Description: "{cm:LaunchProgram,{#StringChange(AppName, '&', '&&')}}"; Flags: nowait postinstall skipifsilent

